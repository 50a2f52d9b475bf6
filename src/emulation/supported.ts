/**
 * Which platforms this host can execute, the way BuildKit's archutil decides: the native
 * platform, plus every architecture whose probe executable runs as `/check` inside a chroot
 * of an otherwise empty directory. The chroot matters: a binfmt_misc handler registered
 * without the F flag has its interpreter looked up in the guest's root, where it is missing,
 * and such a handler would not work inside a container either.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isKilnError, messageOf } from "../errors.js";
import { defaultPlatform, normalize, only, type Platform } from "../platform/index.js";
import { run, type RunResult } from "../process/index.js";
import { amd64LevelFromCpuinfo } from "./cpu.js";
import {
  DEFAULT_BINFMT_MOUNT,
  magicMatches,
  readBinfmtHandlers,
  type BinfmtHandler,
} from "./handlers.js";
import { AMD64_LEVEL_EXIT_BASE, PROBE_ARCHITECTURES, probeBinary } from "./probes.js";

/** A probe is a few instructions; one still running after this is stuck in the emulator. */
const PROBE_TIMEOUT_MS = 10_000;

export interface ProbeFailure {
  architecture: string;
  /** Why the probe did not run, in words a user can act on. */
  reason: string;
}

export interface SupportedPlatforms {
  /** The normalized host platform. */
  native: Platform;
  /** Platforms runnable natively or through a kernel binfmt_misc handler, native first. */
  supported: Platform[];
  /** The kernel's binfmt_misc entries. */
  binfmt: BinfmtHandler[];
  /** Architectures whose probe was run and failed (empty with `ignoreBinfmt`). */
  failures: ProbeFailure[];
}

export interface ProbeOptions {
  /** Report only the native platform and what it runs natively; runs no probes. */
  ignoreBinfmt?: boolean;
  /** Reuse a result at most this old (default 20 s, as BuildKit); 0 re-probes. */
  cacheMaxAgeMs?: number;
  /** Where binfmt_misc is mounted (default /proc/sys/fs/binfmt_misc). */
  mountPoint?: string;
  /**
   * Probe only these architectures (Go names): a build needs the answer for its target
   * platforms, not a process per architecture kiln knows. Default: all of them.
   */
  architectures?: readonly string[];
  /**
   * A file that keeps each architecture's successful probe across processes, for as long as
   * the kernel, its binfmt_misc handlers and their interpreter files stay the same: BuildKit's
   * daemon probes once, not for every build, and a probe costs an emulator's start.
   */
  recordFile?: string;
}

const DEFAULT_CACHE_MAX_AGE_MS = 20_000;

const cache = new Map<string, { at: number; result: Promise<SupportedPlatforms> }>();

export function probeSupported(opts: ProbeOptions = {}): Promise<SupportedPlatforms> {
  const key = JSON.stringify([
    opts.ignoreBinfmt ?? false,
    opts.mountPoint ?? DEFAULT_BINFMT_MOUNT,
    opts.architectures ?? null,
  ]);
  const maxAge = opts.cacheMaxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS;
  const hit = cache.get(key);
  if (hit !== undefined && Date.now() - hit.at < maxAge) return hit.result;
  const result = detect(opts);
  cache.set(key, { at: Date.now(), result });
  // A failed probe run must not be served from the cache.
  result.catch(() => cache.delete(key));
  return result;
}

/** The platforms a probe's success stands for (arm probes as v7 and also covers v6). */
function platformsFor(architecture: string): Platform[] {
  if (architecture === "arm") {
    return [
      { os: "linux", architecture: "arm", variant: "v7" },
      { os: "linux", architecture: "arm", variant: "v6" },
    ];
  }
  return [{ os: "linux", architecture }];
}

/** `linux/amd64` plus `linux/amd64/v2`…`vN`, as BuildKit lists the x86-64 levels. */
function amd64Platforms(level: number): Platform[] {
  const out: Platform[] = [{ os: "linux", architecture: "amd64" }];
  for (let v = 2; v <= level; v++)
    out.push({ os: "linux", architecture: "amd64", variant: `v${v}` });
  return out;
}

async function nativePlatforms(native: Platform): Promise<Platform[]> {
  if (native.architecture === "amd64") {
    const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
    return amd64Platforms(amd64LevelFromCpuinfo(cpuinfo));
  }
  if (native.architecture === "arm" && (native.variant === "v7" || native.variant === "v8")) {
    return [native, { os: "linux", architecture: "arm", variant: "v6" }];
  }
  return [native];
}

async function detect(opts: ProbeOptions): Promise<SupportedPlatforms> {
  const native = defaultPlatform();
  const binfmt = readBinfmtHandlers(opts.mountPoint);
  const supported = await nativePlatforms(native);
  const failures: ProbeFailure[] = [];
  if (native.os !== "linux") return { native, supported: [native], binfmt, failures };

  const candidates = PROBE_ARCHITECTURES.filter(
    (a) => a !== native.architecture && (opts.architectures?.includes(a) ?? true),
  );
  if (opts.ignoreBinfmt) {
    const runsNatively = only(native);
    for (const arch of candidates) {
      supported.push(...platformsFor(arch).filter((p) => runsNatively.match(p)));
    }
    return { native, supported: dedupe(supported), binfmt, failures };
  }

  const fingerprint = opts.recordFile === undefined ? undefined : probeFingerprint(binfmt);
  const record = fingerprint === undefined ? undefined : readRecord(opts.recordFile!, fingerprint);
  const outcomes = await Promise.all(
    candidates.map((arch) => {
      const kept = record?.probes[arch];
      return kept === undefined ? probe(arch, binfmt) : Promise.resolve(kept);
    }),
  );
  const learned: ProbeRecord["probes"] = {};
  outcomes.forEach((outcome, i) => {
    const arch = candidates[i]!;
    if ("reason" in outcome) failures.push({ architecture: arch, reason: outcome.reason });
    else {
      supported.push(...outcome.platforms);
      // only successes are kept: a failure may be passing (a timeout under load)
      if (record !== undefined && record.probes[arch] === undefined) learned[arch] = outcome;
    }
  });
  if (Object.keys(learned).length > 0) keepProbes(opts.recordFile!, fingerprint!, learned);
  return { native, supported: dedupe(supported), binfmt, failures };
}

/** Successful probes, valid for one state of the kernel's emulation (the fingerprint). */
interface ProbeRecord {
  fingerprint: string;
  probes: Record<string, { platforms: Platform[] }>;
}

/**
 * What a probe's outcome depends on: the kernel, every binfmt_misc handler (an unregistered
 * or disabled one changes its entry) and the file identity of each interpreter (a new QEMU
 * is a new file), and the probe programs themselves.
 */
function probeFingerprint(binfmt: readonly BinfmtHandler[]): string {
  const h = createHash("sha256").update(`${os.release()}\n`);
  for (const b of binfmt) {
    const st =
      b.interpreter === undefined ? undefined : statSync(b.interpreter, { throwIfNoEntry: false });
    h.update(
      JSON.stringify([
        b.name,
        b.enabled,
        b.interpreter ?? null,
        b.flags,
        b.offset ?? null,
        Buffer.from(b.magic ?? []).toString("hex"),
        Buffer.from(b.mask ?? []).toString("hex"),
        b.extension ?? null,
        st === undefined ? null : `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`,
      ]) + "\n",
    );
  }
  for (const arch of PROBE_ARCHITECTURES) h.update(probeBinary(arch)!);
  return h.digest("hex");
}

/** The record if it is for this fingerprint, else an empty one (stale, missing or torn). */
function readRecord(file: string, fingerprint: string): ProbeRecord {
  try {
    const r = JSON.parse(readFileSync(file, "utf8")) as ProbeRecord;
    if (r.fingerprint === fingerprint && typeof r.probes === "object") return r;
  } catch {
    // none yet, or torn: probing again is always right
  }
  return { fingerprint, probes: {} };
}

/**
 * Adds probes to the record as it is on disk now: a build probes its platforms at once, and
 * each must add to what the others kept. Read and write are synchronous, so no other probe of
 * this process comes between them; the write is atomic (temp file + rename).
 */
function keepProbes(file: string, fingerprint: string, learned: ProbeRecord["probes"]): void {
  const record = readRecord(file, fingerprint);
  Object.assign(record.probes, learned);
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(record));
    renameSync(tmp, file);
  } catch {
    // only an optimisation: the next build probes again
  }
}

function dedupe(platforms: Platform[]): Platform[] {
  const seen = new Set<string>();
  return platforms
    .map((p) => normalize(p))
    .filter((p) => {
      const k = `${p.os}/${p.architecture}/${p.variant ?? ""}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
}

type ProbeOutcome = { platforms: Platform[] } | { reason: string };

/** Runs one architecture's probe in a chroot (directly when not root) and interprets it. */
async function probe(arch: string, binfmt: BinfmtHandler[]): Promise<ProbeOutcome> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `kiln-probe-${arch}-`));
  try {
    await writeFile(path.join(dir, "check"), probeBinary(arch)!, { mode: 0o755 });
    // chroot(2) needs CAP_SYS_CHROOT; without it the probe still tells whether the kernel
    // can run the binary, only not whether a handler lacks the F flag.
    const viaChroot = process.getuid?.() === 0;
    let r: RunResult;
    try {
      r = viaChroot
        ? await run("chroot", [dir, "/check"], { timeoutMs: PROBE_TIMEOUT_MS })
        : await run(path.join(dir, "check"), [], { timeoutMs: PROBE_TIMEOUT_MS });
    } catch (e) {
      if (isKilnError(e) && e.code === "E_PROCESS_SPAWN") {
        // Run directly, the kernel refused the probe itself (ENOEXEC): say why below.
        if (!viaChroot) return { reason: refusalReason(probeBinary(arch)!, binfmt) };
        return { reason: `cannot run chroot(8): ${messageOf(e.cause ?? e)}` };
      }
      return { reason: `the probe did not finish: ${messageOf(e)}` };
    }
    if (r.signal !== null) return { reason: `the probe was killed by ${r.signal}` };
    if (arch === "amd64") {
      const level = r.exitCode - AMD64_LEVEL_EXIT_BASE;
      if (level === 1 || level === 2) return { platforms: amd64Platforms(level) };
    } else if (r.exitCode === 0) {
      return { platforms: platformsFor(arch) };
    }
    // chroot(8) cannot tell ENOEXEC from ENOENT (execvp retries ENOEXEC with /bin/sh, absent
    // in the chroot), so the registered handlers say why the kernel refused.
    if (r.exitCode === 126 || r.exitCode === 127) {
      return { reason: refusalReason(probeBinary(arch)!, binfmt) };
    }
    return { reason: `the probe exited with status ${r.exitCode}: ${r.stderr.trim()}`.trim() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function refusalReason(probeBytes: Uint8Array, binfmt: BinfmtHandler[]): string {
  const handler = binfmt.find(
    (h) => h.magic !== undefined && magicMatches(probeBytes, h.offset ?? 0, h.magic, h.mask),
  );
  if (handler === undefined)
    return "exec format error: no binfmt_misc handler is registered for it";
  if (!handler.enabled) return `its binfmt_misc handler ${handler.name} is disabled`;
  if (!handler.flags.includes("F")) {
    return `its binfmt_misc handler ${handler.name} was registered without the F flag, so ${handler.interpreter ?? "the interpreter"} cannot be found inside a chroot or container`;
  }
  return `its binfmt_misc handler ${handler.name} (${handler.interpreter ?? "?"}) failed to run it`;
}
