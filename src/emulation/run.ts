/**
 * The one place emulation/ starts external programs (chroot, mount, qemu --version): fixed
 * argv, no shell, a timeout, and output collected with a cap so a misbehaving child cannot
 * exhaust memory.
 */
import { spawn } from "node:child_process";

export interface RunResult {
  /** Exit status, or undefined when killed by a signal or not started. */
  exitCode: number | undefined;
  signal: NodeJS.Signals | undefined;
  stdout: string;
  stderr: string;
  /** Set when the program could not be started (e.g. ENOENT, ENOEXEC). */
  spawnError?: NodeJS.ErrnoException;
}

const OUTPUT_CAP = 64 * 1024;

export function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 10_000,
      killSignal: "SIGKILL",
    });
    const out: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
    for (const name of ["stdout", "stderr"] as const) {
      child[name].setEncoding("utf8");
      child[name].on("data", (chunk: string) => {
        if (out[name].length < OUTPUT_CAP)
          out[name] += chunk.slice(0, OUTPUT_CAP - out[name].length);
      });
    }
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on("error", (e: NodeJS.ErrnoException) => {
      spawnError = e;
    });
    child.on("close", (code, signal) => {
      const result: RunResult = {
        exitCode: code ?? undefined,
        signal: signal ?? undefined,
        ...out,
      };
      if (spawnError !== undefined) result.spawnError = spawnError;
      resolve(result);
    });
  });
}
