import { spawn, type ChildProcess } from "node:child_process";
import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { KilnError, messageOf } from "../errors.js";

/** How much of a child's stderr is kept for error messages. */
const STDERR_TAIL_BYTES = 16 * 1024;
/** Collected stdout beyond this is an error: large outputs must be streamed with onStdout. */
const DEFAULT_MAX_STDOUT_BYTES = 16 * 1024 * 1024;

/** What every way of starting a program accepts. */
export interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** SIGKILL the child after this long and fail with E_PROCESS_TIMEOUT. */
  timeoutMs?: number;
  /** SIGKILL the child on abort and fail with E_PROCESS_ABORTED. */
  signal?: AbortSignal;
  /** Start through `setpriv --pdeathsig KILL` so the child dies when kiln dies. */
  killWithParent?: boolean;
  /** Stream stderr; its tail is still kept for error messages. */
  onStderr?: (chunk: Buffer) => void;
  /** Called once the child is running. */
  onSpawn?: (pid: number) => void;
  /** A file descriptor the program writes its output to (default: a pipe to kiln). */
  stdout?: number;
}

export interface RunOptions extends StartOptions {
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Stream stdout instead of collecting it into the result. */
  onStdout?: (chunk: Buffer) => void;
  maxStdoutBytes?: number;
}

/** How a program ended. */
export interface ExitStatus {
  /** The exit status, or 128 + signal number when the child was killed by a signal. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  /** The last STDERR_TAIL_BYTES of stderr, decoded. */
  stderr: string;
}

export interface RunResult extends ExitStatus {
  /** Collected stdout (empty when onStdout was given). */
  stdout: Buffer;
}

export interface CheckedRunOptions extends RunOptions {
  /** KilnError code for a non-zero exit; E_PROCESS_FAILED by default. */
  errorCode?: string;
  hint?: string;
}

export interface StreamOptions extends StartOptions {
  /** The child's stdin: the returned pipe (default), /dev/null, or an open file descriptor. */
  stdin?: "pipe" | "ignore" | number;
}

/** A running program whose stdout the caller consumes as a stream. */
export interface StreamingProcess {
  /** Its stdin, when it was started with a pipe. */
  stdin: Writable | null;
  stdout: Readable;
  /**
   * Settles once the program has exited and its output is closed (so stdout must be read):
   * resolves whatever the exit status; rejects when it cannot start, times out or is aborted.
   */
  done: Promise<ExitStatus>;
  /** SIGKILL the program; `done` then resolves with the signal. */
  kill(): void;
}

/** Quote argv for messages only (never for a shell). */
export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

/**
 * Start a program with an explicit argv (no shell) and watch it: stderr tail, timeout,
 * abort, start failure. Every public entry point goes through here.
 */
function start(
  file: string,
  args: readonly string[],
  stdin: "pipe" | "ignore" | number,
  opts: StartOptions,
): { child: ChildProcess; done: Promise<ExitStatus>; kill: (why?: KilnError) => void } {
  const argv = opts.killWithParent
    ? { file: "setpriv", args: ["--pdeathsig", "KILL", "--", file, ...args] }
    : { file, args: [...args] };
  const command = formatCommand(file, args);
  if (opts.signal?.aborted) {
    throw new KilnError("E_PROCESS_ABORTED", `${command}: aborted before start`);
  }
  const child = spawn(argv.file, argv.args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: [stdin, opts.stdout ?? "pipe", "pipe"],
  });
  let stderrTail = Buffer.alloc(0);
  let failure: KilnError | undefined;
  let timer: NodeJS.Timeout | undefined;

  const kill = (why?: KilnError) => {
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
  child.stderr!.on("data", (chunk: Buffer) => {
    opts.onStderr?.(chunk);
    stderrTail = Buffer.concat([stderrTail, chunk]);
    if (stderrTail.length > STDERR_TAIL_BYTES) {
      stderrTail = stderrTail.subarray(stderrTail.length - STDERR_TAIL_BYTES);
    }
  });
  // A child that exits without reading its input closes the pipe: the writer sees that.
  child.stdin?.on("error", () => undefined);
  child.once("spawn", () => {
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
  });

  const done = new Promise<ExitStatus>((resolve, reject) => {
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
      resolve({ exitCode: code ?? 128 + signo, signal: sig, stderr: stderrTail.toString("utf8") });
    });
  });
  return { child, done, kill };
}

/**
 * Run an external program with an explicit argv (no shell). Resolves with the exit status
 * whatever it is; rejects only when the program cannot be started, times out or is aborted.
 */
export async function run(
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const { child, done, kill } = start(
    file,
    args,
    opts.input === undefined ? "ignore" : "pipe",
    opts,
  );
  const stdoutChunks: Buffer[] = [];
  let stdoutBytes = 0;
  const maxStdout = opts.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;
  child.stdout!.on("data", (chunk: Buffer) => {
    if (opts.onStdout) {
      opts.onStdout(chunk);
      return;
    }
    stdoutBytes += chunk.length;
    if (stdoutBytes > maxStdout) {
      kill(
        new KilnError(
          "E_PROCESS_OUTPUT",
          `${formatCommand(file, args)}: more than ${maxStdout} bytes of output`,
        ),
      );
      return;
    }
    stdoutChunks.push(chunk);
  });
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  const status = await done;
  return { ...status, stdout: Buffer.concat(stdoutChunks) };
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

/**
 * Start a program whose output is too large to collect: the caller reads `stdout` (and
 * writes `stdin`) as streams, then awaits `done`. An already aborted `signal` throws at once.
 */
export function spawnStream(
  file: string,
  args: readonly string[],
  opts: StreamOptions = {},
): StreamingProcess {
  const { child, done, kill } = start(file, args, opts.stdin ?? "pipe", opts);
  return {
    stdin: child.stdin,
    stdout: child.stdout!,
    done,
    kill: () => {
      kill();
    },
  };
}

/** Builds the caller's own error from what went wrong with a filter program. */
export type FilterFailure = (detail: string, cause?: unknown) => Error;

/**
 * Stream `input` through a filter program (stdin → stdout, e.g. `zstd -d`). Its exit status
 * is checked after its output ends, so a truncated or corrupt input surfaces as an error;
 * `fail` turns a failure into the caller's error. Stopping early kills the program.
 */
export async function* filterThrough(
  file: string,
  args: readonly string[],
  input: AsyncIterable<Uint8Array>,
  fail: FilterFailure,
): AsyncGenerator<Buffer> {
  const proc = spawnStream(file, args, { stdin: "pipe" });
  proc.done.catch(() => undefined); // awaited below; a start failure must not go unhandled first
  let feedError: unknown;
  const feeding = feed(input, proc.stdin!).catch((e: unknown) => {
    feedError = e;
    proc.kill();
  });
  let finished = false;
  try {
    for await (const c of proc.stdout) yield c as Buffer;
    await feeding;
    let status: ExitStatus;
    try {
      status = await proc.done;
    } catch (e) {
      throw fail(messageOf(e), e);
    }
    finished = true;
    checkFilter(file, status, feedError, fail);
  } finally {
    if (!finished) proc.kill();
  }
}

/** How much input a filter program is given per write (two such buffers, used in turn). */
const FEED_BATCH = 1024 * 1024;

/**
 * Write `input` to a program's stdin and end it, in writes of FEED_BATCH bytes: each chunk is
 * copied into one of two buffers as soon as it arrives, so the source may read into one buffer
 * of its own for every chunk, and the program is woken once per batch rather than once per tar
 * header or small file. Reusing the two buffers matters here: fresh memory per chunk costs
 * page faults (a 20 MiB layer tar reached igzip in ~170 ms that way, ~105 ms like this).
 * Rejects with the input's error or the pipe's (EPIPE when the program stopped reading).
 */
async function feed(input: AsyncIterable<Uint8Array>, stdin: Writable): Promise<void> {
  const free: Buffer[] = [Buffer.allocUnsafeSlow(FEED_BATCH), Buffer.allocUnsafeSlow(FEED_BATCH)];
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const settle = (e?: Error | null) => {
    // writes queued behind a failed one fail as "destroyed": the pipe's own error says more
    if (e) failure ??= stdin.errored ?? e;
    const w = wake;
    wake = undefined;
    w?.();
  };
  // a broken pipe also reaches each pending write's callback; the event must not go unheard
  stdin.on("error", settle);
  const send = (buf: Buffer, length: number) => {
    stdin.write(length === buf.length ? buf : buf.subarray(0, length), (e) => {
      free.push(buf);
      settle(e);
    });
  };
  const nextBuffer = async (): Promise<Buffer> => {
    while (free.length === 0 && failure === undefined) await new Promise<void>((r) => (wake = r));
    if (failure !== undefined) throw failure;
    return free.pop()!;
  };
  try {
    let buf: Buffer | undefined;
    let used = 0;
    for await (const chunk of input) {
      for (let at = 0; at < chunk.length;) {
        if (failure !== undefined) throw failure;
        buf ??= await nextBuffer();
        const n = Math.min(chunk.length - at, buf.length - used);
        buf.set(chunk.subarray(at, at + n), used);
        used += n;
        at += n;
        if (used === buf.length) {
          send(buf, used);
          buf = undefined;
          used = 0;
        }
      }
    }
    if (buf !== undefined && used > 0) send(buf, used);
    stdin.end();
    // rejects at once for a pipe closed before its end (a program that never started)
    await finished(stdin);
    if (failure !== undefined) throw failure;
  } catch (e) {
    stdin.destroy();
    throw e;
  }
}

/**
 * Feed `input` to a filter program that writes its output into the open file `fd` itself (no
 * trip through kiln: large outputs cost kiln's thread nothing), and wait for it to end. The
 * program dies with kiln: it must not go on writing into a file kiln no longer owns.
 */
export async function filterToFile(
  file: string,
  args: readonly string[],
  input: AsyncIterable<Uint8Array>,
  fd: number,
  fail: FilterFailure,
): Promise<void> {
  const { child, done, kill } = start(file, args, "pipe", { stdout: fd, killWithParent: true });
  done.catch(() => undefined); // awaited below; a start failure must not go unhandled first
  let feedError: unknown;
  await feed(input, child.stdin!).catch((e: unknown) => {
    feedError = e;
    kill();
  });
  let status: ExitStatus;
  try {
    status = await done;
  } catch (e) {
    throw fail(messageOf(e), e);
  }
  checkFilter(file, status, feedError, fail);
}

/** A filter's failure from how it ended and whether feeding it failed. */
function checkFilter(
  file: string,
  status: ExitStatus,
  feedError: unknown,
  fail: FilterFailure,
): void {
  // The program closed its stdin (EPIPE, or the pipe closed or was destroyed before a write
  // was flushed).
  const feedCode = (feedError as { code?: string } | undefined)?.code;
  const pipeBroken =
    feedCode === "EPIPE" ||
    feedCode === "ERR_STREAM_PREMATURE_CLOSE" ||
    feedCode === "ERR_STREAM_DESTROYED";
  if (feedError !== undefined && !pipeBroken) throw feedError as Error;
  if (status.exitCode !== 0) {
    const how = status.signal ? `killed by ${status.signal}` : `exit status ${status.exitCode}`;
    const stderr = status.stderr.trim();
    throw fail(`${file} failed (${how})${stderr === "" ? "" : `: ${stderr}`}`);
  }
  if (feedError !== undefined) throw fail(`${file} stopped reading its input`, feedError);
}
