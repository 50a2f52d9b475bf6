/**
 * Brief commands (the snapshotter's `sync -f`) started by a small shell instead of by kiln
 * itself.
 *
 * Node starts a program by forking its own process, which blocks kiln's one JavaScript thread
 * for a time that grows with kiln's memory (about 5 ms at 50 MB, 13 ms at 150 MB here): a cold
 * two-platform build starts ~10 such commands. A shell (dash, ~1 MB) forks them in a few tens
 * of microseconds, on its own time. Each shell runs one command at a time; a few are kept.
 *
 * The protocol is shell text on the shell's stdin, every argument single-quoted (so nothing in
 * it is ever interpreted), and on its stdout the command's stderr then a line with a marker
 * nobody else can print and the exit status.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { KilnError } from "../errors.js";
import { formatCommand, type ExitStatus } from "./run.js";

export interface BriefOptions {
  cwd?: string;
  /** Kill the command (and its shell) after this long and fail with E_PROCESS_TIMEOUT. */
  timeoutMs?: number;
}

/** How many shells run brief commands at once (more wait their turn). */
const SHELLS = 4;
/** What of a command's stderr is kept (the shell's output is read until the marker). */
const STDERR_TAIL_BYTES = 16 * 1024;

/** A single-quoted shell word: the shell takes every byte of it literally. */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The shell text that runs one command: its stderr to the shell's stdout, then the marker. */
export function briefScript(
  file: string,
  args: readonly string[],
  cwd: string | undefined,
  marker: string,
): string {
  const command = [file, ...args].map(shellQuote).join(" ");
  // a subshell when there is a directory to change to, so the shell's own stays put
  const body = cwd === undefined ? command : `(cd ${shellQuote(cwd)} && exec ${command})`;
  return `${body} </dev/null 2>&1 >/dev/null; printf '\\n${marker} %d\\n' "$?"\n`;
}

interface Pending {
  resolve: (status: ExitStatus) => void;
  reject: (e: unknown) => void;
  output: Buffer;
}

class BriefShell {
  readonly child: ChildProcess;
  private readonly marker = `kiln-brief-${randomBytes(8).toString("hex")}`;
  private pending: Pending | undefined;
  dead = false;

  constructor() {
    // detached: its own process group, so a timeout kills the command with it
    this.child = spawn("/bin/sh", [], { stdio: ["pipe", "pipe", "ignore"], detached: true });
    this.child.stdin!.on("error", () => undefined);
    this.child.stdout!.on("data", (chunk: Buffer) => {
      this.onOutput(chunk);
    });
    this.child.once("error", (e) => {
      this.fail(new KilnError("E_PROCESS_SPAWN", `cannot start /bin/sh: ${e.message}`));
    });
    this.child.once("close", () => {
      this.fail(new KilnError("E_PROCESS_FAILED", "the shell running brief commands ended"));
    });
    this.idle();
  }

  run(file: string, args: readonly string[], opts: BriefOptions): Promise<ExitStatus> {
    return new Promise<ExitStatus>((resolve, reject) => {
      this.pending = { resolve, reject, output: Buffer.alloc(0) };
      this.busy();
      this.child.stdin!.write(briefScript(file, args, opts.cwd, this.marker));
    });
  }

  /** Kills the shell and what it runs (its process group). */
  kill(why: KilnError): void {
    this.fail(why);
    if (this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }

  private onOutput(chunk: Buffer): void {
    const p = this.pending;
    if (p === undefined) return;
    p.output = Buffer.concat([p.output, chunk]);
    const text = p.output.toString("utf8");
    const m = new RegExp(`\\n${this.marker} (\\d+)\\n$`).exec(text);
    if (m === null) {
      if (p.output.length > 4 * STDERR_TAIL_BYTES)
        p.output = p.output.subarray(p.output.length - 2 * STDERR_TAIL_BYTES);
      return;
    }
    this.pending = undefined;
    this.idle();
    const status = Number(m[1]);
    p.resolve({
      exitCode: status,
      signal: null,
      stderr: text.slice(Math.max(0, m.index - STDERR_TAIL_BYTES), m.index),
    });
  }

  private fail(e: unknown): void {
    this.dead = true;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }

  private idle(): void {
    holdsKilnOpen(this.child, false);
  }

  private busy(): void {
    holdsKilnOpen(this.child, true);
  }
}

/**
 * Whether a long-lived helper process (and its pipes) keeps kiln's event loop alive: only
 * while it works for kiln. An idle one must not keep kiln running; it exits when kiln's end of
 * its stdin closes.
 */
export function holdsKilnOpen(child: ChildProcess, busy: boolean): void {
  if (busy) child.ref();
  else child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) {
    const socket = s as Partial<Socket> | null;
    if (busy) socket?.ref?.();
    else socket?.unref?.();
  }
}

const free: BriefShell[] = [];
let started = 0;
const waiting: ((s: BriefShell) => void)[] = [];

async function takeShell(): Promise<BriefShell> {
  for (let s = free.pop(); s !== undefined; s = free.pop()) if (!s.dead) return s;
  if (started < SHELLS) {
    started++;
    return new BriefShell();
  }
  return new Promise((resolve) => waiting.push(resolve));
}

function giveBack(s: BriefShell): void {
  if (s.dead) {
    started--;
    const next = waiting.shift();
    if (next) {
      started++;
      next(new BriefShell());
    }
    return;
  }
  const next = waiting.shift();
  if (next) next(s);
  else free.push(s);
}

/**
 * Run a brief command (no input, no output but its stderr) through a shell. Resolves with the
 * exit status whatever it is; rejects when it cannot be started or times out.
 */
export async function runBrief(
  file: string,
  args: readonly string[],
  opts: BriefOptions = {},
): Promise<ExitStatus> {
  const shell = await takeShell();
  let timer: NodeJS.Timeout | undefined;
  try {
    const running = shell.run(file, args, opts);
    if (opts.timeoutMs !== undefined) {
      const ms = opts.timeoutMs;
      timer = setTimeout(() => {
        shell.kill(
          new KilnError(
            "E_PROCESS_TIMEOUT",
            `${formatCommand(file, args)}: timed out after ${ms} ms`,
            { hint: "The external program hung; check the system (mounts, disk) and retry." },
          ),
        );
      }, ms);
    }
    const status = await running;
    // the shell could not find or start the program (its own exit statuses for that)
    if (status.exitCode === 127 || status.exitCode === 126) {
      throw new KilnError(
        "E_PROCESS_SPAWN",
        `cannot start ${file}: ${status.stderr.trim() || `exit ${status.exitCode}`}`,
        { hint: `Install ${file} and make sure it is on PATH.` },
      );
    }
    return status;
  } finally {
    if (timer) clearTimeout(timer);
    giveBack(shell);
  }
}

/** runBrief, failing on a non-zero exit with `errorCode` and the command's stderr. */
export async function runBriefChecked(
  file: string,
  args: readonly string[],
  opts: BriefOptions & { errorCode?: string; hint?: string } = {},
): Promise<ExitStatus> {
  const status = await runBrief(file, args, opts);
  if (status.exitCode !== 0) {
    const detail = status.stderr.trim();
    throw new KilnError(
      opts.errorCode ?? "E_PROCESS_FAILED",
      `${formatCommand(file, args)} failed (exit ${status.exitCode})${detail ? `: ${detail}` : ""}`,
      { hint: opts.hint },
    );
  }
  return status;
}
