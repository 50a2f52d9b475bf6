// Running one process in a runc container: OCI runtime spec, user/group lookup, emulation.
export { runContainer, cleanupStaleContainers, DEFAULT_STATE_DIR } from "./runc.js";
export type { ExecSpec, ExecIO, ExecResult, ExecutorOptions, Mount } from "./types.js";
export { buildRuntimeSpec, withDefaultPath, DEFAULT_CAPABILITIES } from "./spec.js";
export type { OciSpec, OciMount, RuntimeSpecInput } from "./spec.js";
export { parsePasswd, parseGroup, resolveUser, lookupUser } from "./user.js";
export type { PasswdEntry, GroupEntry, ResolvedUser } from "./user.js";
export { hostsFile, containerResolvConf, DEFAULT_HOSTNAME } from "./etcfiles.js";
