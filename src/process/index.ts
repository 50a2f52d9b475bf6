// The one place kiln starts external programs (runc, mount, cp, qemu): argv, timeouts,
// abort, stderr capture for errors, and cleanup on interruption.
export { run, runChecked, formatCommand } from "./run.js";
export type { RunOptions, RunResult, CheckedRunOptions } from "./run.js";
export { onCleanup, runCleanups, pendingCleanups } from "./cleanup.js";
export { ownerTag, isOwnerAlive } from "./owner.js";
