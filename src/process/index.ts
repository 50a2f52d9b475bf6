// The one place kiln starts external programs (runc, mknod, qemu, zstd, the mount(2) helper): argv,
// timeouts, abort, stderr capture for errors, streaming, and cleanup on interruption.
export { run, runChecked, spawnStream, filterThrough, filterToFile, formatCommand } from "./run.js";
export type {
  StartOptions,
  RunOptions,
  RunResult,
  ExitStatus,
  CheckedRunOptions,
  StreamOptions,
  StreamingProcess,
  FilterFailure,
} from "./run.js";
export { runBrief, runBriefChecked } from "./brief.js";
export {
  mountSyscall,
  unmountSyscall,
  prepareMountHelper,
  MNT_DETACH,
  type SyscallFailure,
} from "./mounter.js";
export type { BriefOptions } from "./brief.js";
export { onCleanup, runCleanups, pendingCleanups } from "./cleanup.js";
export { ownerTag, isOwnerAlive } from "./owner.js";
