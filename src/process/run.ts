import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { KilnError, messageOf } from "../errors.js";

/** How much of a child's stderr is kept for error messages. */
const STDERR_TAIL_BYTES = 16 * 1024;
/** Collected stdout beyond this is an error: large outputs must be streamed with onStdout. */
const DEFAULT_MAX_STDOUT_BYTES = 16 * 1024 * 1024;

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
  /** SIGKILL the child after this long and fail with E_PROCESS_TIMEOUT. */
  timeoutMs?: number;
  /** SIGKILL the child on abort and fail with E_PROCESS_ABORTED. */
  signal?: AbortSignal;
  /** Start through `setpriv --pdeathsig KILL` so the child dies when kiln dies. */
  killWithParent?: boolean;
  /** Stream stdout instead of collecting it into the result. */
  onStdout?: (chunk: Buffer) => void;
  /** Stream stderr; its tail is still kept for error messages. */
  onStderr?: (chunk: Buffer) => void;
  /** Called once the child is running. */
  onSpawn?: (pid: number) => void;
  maxStdoutBytes?: number;
}

export interface RunResult {
  /** The exit status, or 128 + signal number when the child was killed by a signal. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  /** Collected stdout (empty when onStdout was given). */
  stdout: Buffer;
  /** The last STDERR_TAIL_BYTES of stderr, decoded. */
  stderr: string;
}

export interface CheckedRunOptions extends RunOptions {
  /** KilnError code for a non-zero exit; E_PROCESS_FAILED by default. */
  errorCode?: string;
  hint?: string;
}

/** Quote argv for messages only (never for a shell). */
export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

/**
 * Run an external program with an explicit argv (no shell). Resolves with the exit status
 * whatever it is; rejects only when the program cannot be started, times out or is aborted.
 */
export function run(
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const argv = opts.killWithParent
    ? { file: "setpriv", args: ["--pdeathsig", "KILL", "--", file, ...args] }
    : { file, args: [...args] };
  const command = formatCommand(file, args);
  return new Promise<RunResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new KilnError("E_PROCESS_ABORTED", `${command}: aborted before start`));
      return;
    }
    const child = spawn(argv.file, argv.args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    const maxStdout = opts.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;
    let stderrTail = Buffer.alloc(0);
    let failure: KilnError | undefined;
    let timer: NodeJS.Timeout | undefined;

    const kill = (why: KilnError) => {
      failure ??= why;
      child.kill("SIGKILL");
    };
    const onAbort = () => {
      kill(new KilnError("E_PROCESS_ABORTED", `${command}: aborted`));
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        kill(
          new KilnError("E_PROCESS_TIMEOUT", `${command}: timed out after ${opts.timeoutMs} ms`, {
            hint: "The external program hung; check the system (mounts, disk) and retry.",
          }),
        );
      }, opts.timeoutMs);
    }

    child.stdout!.on("data", (chunk: Buffer) => {
      if (opts.onStdout) {
        opts.onStdout(chunk);
        return;
      }
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdout) {
        kill(
          new KilnError("E_PROCESS_OUTPUT", `${command}: more than ${maxStdout} bytes of output`),
        );
        return;
      }
      stdoutChunks.push(chunk);
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      opts.onStderr?.(chunk);
      stderrTail = Buffer.concat([stderrTail, chunk]);
      if (stderrTail.length > STDERR_TAIL_BYTES) {
        stderrTail = stderrTail.subarray(stderrTail.length - STDERR_TAIL_BYTES);
      }
    });
    if (opts.input !== undefined && child.stdin) {
      // A child that exits without reading its input closes the pipe: not our error.
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.input);
    }
    child.once("spawn", () => {
      if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    });

    const finish = () => {
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    };
    child.once("error", (err: NodeJS.ErrnoException) => {
      finish();
      const missing = err.code === "ENOENT";
      reject(
        new KilnError("E_PROCESS_SPAWN", `cannot start ${argv.file}: ${messageOf(err)}`, {
          hint: missing ? `Install ${argv.file} and make sure it is on PATH.` : undefined,
          cause: err,
        }),
      );
    });
    child.once("close", (code, sig) => {
      finish();
      if (failure) {
        reject(failure);
        return;
      }
      const signo = sig ? (osConstants.signals[sig] ?? 0) : 0;
      resolve({
        exitCode: code ?? 128 + signo,
        signal: sig,
        stdout: Buffer.concat(stdoutChunks),
        stderr: stderrTail.toString("utf8"),
      });
    });
  });
}

/** Like run, but a non-zero exit is a KilnError carrying the command and its stderr. */
export async function runChecked(
  file: string,
  args: readonly string[],
  opts: CheckedRunOptions = {},
): Promise<RunResult> {
  const result = await run(file, args, opts);
  if (result.exitCode !== 0) {
    const detail = result.stderr.trim() || result.stdout.toString("utf8").trim().slice(-2000);
    throw new KilnError(
      opts.errorCode ?? "E_PROCESS_FAILED",
      `${formatCommand(file, args)} failed (exit ${result.exitCode})${detail ? `: ${detail}` : ""}`,
      { hint: opts.hint },
    );
  }
  return result;
}
