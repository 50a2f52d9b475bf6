export type Mount =
  | { type: "bind"; source: string; target: string; readonly: boolean }
  | { type: "tmpfs"; target: string; /** bytes */ size?: number; /** e.g. 0o1777 */ mode?: number };

export interface ExecSpec {
  /** runc container id; generated when omitted. */
  id?: string;
  /** Host path of the (already mounted) root filesystem. */
  rootfs: string;
  args: string[];
  /** KEY=value; PATH defaults to the standard one when absent. */
  env: string[];
  /** Working directory inside the container; created (owned by the user) if missing. */
  cwd: string;
  /** name|uid[:group|gid], resolved in the rootfs's /etc/passwd and /etc/group; default root. */
  user?: string;
  /** Default "buildkitsandbox", like BuildKit. */
  hostname?: string;
  /** "none": own network namespace with loopback only; "host": the host's network. */
  network: "none" | "host";
  extraHosts?: { host: string; ip: string }[];
  mounts: Mount[];
  /** Run argv under this host QEMU user-mode binary (statically linked). */
  emulator?: { hostPath: string };
  readonlyRootfs?: boolean;
  /**
   * "insecure" (`RUN --security=insecure`): every capability, no seccomp filter, no masked
   * paths, all devices; default "sandbox": containerd's defaults, as BuildKit.
   */
  security?: "sandbox" | "insecure";
}

export interface ExecIO {
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Abort kills the container; runContainer then rejects with E_EXEC_ABORTED. */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** The process's exit status (128 + signal number if it was killed). */
  exitCode: number;
}

export interface ExecutorOptions {
  /** kiln's state directory: runc state lives in <stateDir>/runc, bundles in <stateDir>/bundles. */
  stateDir?: string;
}
