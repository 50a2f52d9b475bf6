// The bench's one place for child processes: timed commands (with /usr/bin/time -v when present),
// quick probes, and the clean-up of whatever a tool left under the bench's work dir.
import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { readFile, readdir, readlink, rm } from "node:fs/promises";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";

export interface Cmd {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
}

export interface TimedResult {
  ok: boolean;
  seconds: number;
  /** Peak RSS of the largest process in the tree (GNU time), KiB. */
  maxRssKiB?: number;
  /** User + system CPU of the command and the children it waited for. */
  cpuSeconds?: number;
  /** Why it failed, with the end of its output. */
  error?: string;
}

const GNU_TIME = "/usr/bin/time";
export const haveGnuTime = existsSync(GNU_TIME);

/**
 * Runs commands one after another as one measured step; stops at the first failure. Output goes
 * to `logFile`. Each command runs in its own process group so a timeout kills all of it.
 */
export async function runTimed(
  cmds: readonly Cmd[],
  logFile: string,
  timeoutMs: number,
): Promise<TimedResult> {
  const log = createWriteStream(logFile, { flags: "a" });
  const start = process.hrtime.bigint();
  let cpu = 0;
  let rss = 0;
  let measured = haveGnuTime;
  let error: string | undefined;
  try {
    for (const cmd of cmds) {
      log.write(`$ ${cmd.argv.join(" ")}\n`);
      const statsFile = `${logFile}.time`;
      const argv = haveGnuTime ? [GNU_TIME, "-v", "-o", statsFile, ...cmd.argv] : cmd.argv;
      const t0 = process.hrtime.bigint();
      const code = await spawnLogged(argv, cmd, log, timeoutMs);
      log.write(
        `# exit ${code} after ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2)}s\n`,
      );
      if (haveGnuTime) {
        const stats = parseGnuTime(await readFile(statsFile, "utf8").catch(() => ""));
        await rm(statsFile, { force: true });
        if (stats) {
          cpu += stats.cpuSeconds;
          rss = Math.max(rss, stats.maxRssKiB);
        } else measured = false;
      }
      if (code !== 0) {
        error = `${cmd.argv.slice(0, 3).join(" ")} … failed (${code})`;
        break;
      }
    }
  } finally {
    log.end();
    await once(log, "close");
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (error !== undefined) {
    const tail = (await readFile(logFile, "utf8")).trimEnd().split("\n").slice(-8).join("\n");
    return { ok: false, seconds, error: `${error}; log ${logFile}:\n${tail}` };
  }
  return measured ? { ok: true, seconds, maxRssKiB: rss, cpuSeconds: cpu } : { ok: true, seconds };
}

async function spawnLogged(
  argv: readonly string[],
  cmd: Cmd,
  log: NodeJS.WritableStream,
  timeoutMs: number,
): Promise<string | number> {
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: cmd.cwd,
    env: { ...process.env, ...cmd.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  if (child.pid !== undefined) active.add(child.pid);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const timer = setTimeout(() => {
    killGroup(child.pid, "SIGKILL");
  }, timeoutMs);
  try {
    const [code, signal] = (await once(child, "close")) as [number | null, string | null];
    return code ?? `signal ${String(signal)}`;
  } catch (e) {
    return `cannot start: ${(e as Error).message}`;
  } finally {
    clearTimeout(timer);
    if (child.pid !== undefined) active.delete(child.pid);
  }
}

/** Process groups of the timed commands running now. */
const active = new Set<number>();

/** Kills every timed command still running (on Ctrl-C), with all its children. */
export function killActive(): void {
  for (const pid of active) killGroup(pid, "SIGKILL");
}

export function parseGnuTime(text: string): { maxRssKiB: number; cpuSeconds: number } | undefined {
  const num = (label: string) => {
    const m = new RegExp(`${label}[^:]*:\\s*([\\d.]+)`).exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const user = num("User time");
  const sys = num("System time");
  const rss = num("Maximum resident set size");
  if (user === undefined || sys === undefined || rss === undefined) return undefined;
  return { maxRssKiB: rss, cpuSeconds: user + sys };
}

/** Runs a short command; never throws. */
export async function probe(
  argv: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ code: number | string; out: string }> {
  const chunks: Buffer[] = [];
  try {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    child.stdout.on("data", (b: Buffer) => chunks.push(b));
    child.stderr.on("data", (b: Buffer) => chunks.push(b));
    const timer = setTimeout(() => {
      killGroup(child.pid, "SIGKILL");
    }, timeoutMs);
    const [code, signal] = (await once(child, "close")) as [number | null, string | null];
    clearTimeout(timer);
    return { code: code ?? `signal ${String(signal)}`, out: Buffer.concat(chunks).toString() };
  } catch (e) {
    return { code: "ENOENT", out: (e as Error).message };
  }
}

export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL the process group. */
export async function stopGroup(pid: number, graceMs: number): Promise<void> {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let waited = 0; waited < graceMs && alive(pid); waited += 100) await sleep(100);
  killGroup(pid, "SIGKILL");
}

/**
 * Kills processes that still refer to `dir` (their argv or working directory): a shim or
 * daemon a tool left behind. The dir is this run's private work dir, so they are the bench's.
 */
export async function killStragglers(dir: string): Promise<number[]> {
  const killed: number[] = [];
  for (const entry of await readdir("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => "");
    if (cmdline.includes(dir) || cwd === dir || cwd.startsWith(`${dir}/`)) {
      try {
        process.kill(pid, "SIGKILL");
        killed.push(pid);
      } catch {
        // Gone meanwhile.
      }
    }
  }
  return killed;
}

/** Unmounts everything mounted under `dir` (deepest first), then removes it. */
export async function removeTree(dir: string): Promise<void> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\040/g, " "))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) await probe(["umount", "-l", p]);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
