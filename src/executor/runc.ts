import { randomBytes } from "node:crypto";
import {
  chownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { readFile, readdir, rm } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { emulatedArgs, privateBinfmtRegistration } from "../emulation/index.js";
import { KilnError, messageOf } from "../errors.js";
import { isOwnerAlive, onCleanup, ownerTag, run, runChecked } from "../process/index.js";
import { containerResolvConf, DEFAULT_HOSTNAME, hostResolvConf, hostsFile } from "./etcfiles.js";
import { resolveInRootSync } from "../rootpath/index.js";
import { buildRuntimeSpec, withDefaultPath, type IdMapping, type PrivateBinfmt } from "./spec.js";
import type { ExecIO, ExecResult, ExecSpec, ExecutorOptions } from "./types.js";
import { lookupUser, type ResolvedUser } from "./user.js";

export const DEFAULT_STATE_DIR = "/var/lib/kiln";
const OWNER_ANNOTATION = "dev.kiln.owner";
const RUNC_TIMEOUT_MS = 60_000;

function dirsOf(opts: ExecutorOptions) {
  const stateDir = resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  return { runcRoot: join(stateDir, "runc"), bundles: join(stateDir, "bundles") };
}

// The set-up and clean-up of a container are a few dozen metadata calls on small files: they
// are synchronous, as a thread-pool round trip each would cost more than the calls.

function exists(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

/** Create the working directory if missing; every created level is owned by the user (like BuildKit). */
function ensureCwd(rootfs: string, cwd: string, user: ResolvedUser): void {
  const host = resolveInRootSync(rootfs, cwd, { followFinal: true });
  const missing: string[] = [];
  for (let p = host; p.startsWith(`${rootfs}/`) && !exists(p); p = dirname(p)) {
    missing.unshift(p);
  }
  for (const p of missing) {
    mkdirSync(p, { mode: 0o755 });
    chownSync(p, user.uid, user.gid);
  }
}

/**
 * runc creates missing mount targets (files or dirs) in the rootfs; they are not part of what
 * the command changed, so the empty ones are removed afterwards, keeping the parent's times.
 */
function mountStubs(rootfs: string, targets: readonly string[]): () => void {
  // each missing target and the missing directories above it, deepest first (runc makes
  // them all; BuildKit removes them all again when they stayed empty)
  const stubs: { target: string; host: string }[] = [];
  for (const target of targets) {
    for (let t = target; t !== "/" && t !== "." && t !== ""; t = posix.dirname(t)) {
      const host = resolveInRootSync(rootfs, t, { followFinal: true });
      if (host === rootfs || exists(host)) break;
      if (!stubs.some((s) => s.host === host)) stubs.push({ target: t, host });
    }
  }
  stubs.sort((a, b) => b.host.length - a.host.length);
  return () => {
    for (const { target, host } of stubs) {
      // Re-resolve so a symlink planted by the command cannot redirect the removal.
      if (resolveInRootSync(rootfs, target, { followFinal: true }) !== host) continue;
      const st = lstatSync(host, { throwIfNoEntry: false });
      if (!st) continue;
      const empty = st.isDirectory() ? readdirSync(host).length === 0 : st.size === 0;
      if (!empty) continue;
      const parent = statSync(dirname(host), { throwIfNoEntry: false });
      rmSync(host, { recursive: true });
      if (parent) utimesSync(dirname(host), parent.atime, parent.mtime);
    }
  };
}

/**
 * Each range of this process's own uid or gid map (`/proc/self/uid_map`), mapped to itself:
 * the whole id space on a host, whatever kiln has when it runs in a user namespace itself.
 */
function identityMap(file: string): IdMapping[] {
  const text = readFileSync(file, "utf8");
  return text
    .split("\n")
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 3)
    .map(([inside, , size]) => ({ containerID: inside!, hostID: inside!, size: size! }));
}

/** Wrapper mode's own binfmt_misc instance, when the kernel and the emulator allow one. */
async function privateBinfmtFor(spec: ExecSpec): Promise<PrivateBinfmt | undefined> {
  if (spec.emulator === undefined) return undefined;
  const register = await privateBinfmtRegistration(spec.emulator.hostPath);
  if (register === undefined) return undefined;
  return {
    register,
    uidMappings: identityMap("/proc/self/uid_map"),
    gidMappings: identityMap("/proc/self/gid_map"),
  };
}

async function deleteContainer(runcRoot: string, id: string): Promise<void> {
  await runChecked("runc", ["--root", runcRoot, "delete", "--force", id], {
    timeoutMs: RUNC_TIMEOUT_MS,
    errorCode: "E_EXEC_CLEANUP",
    hint: `Remove the container by hand: runc --root ${runcRoot} delete --force ${id}`,
  });
}

/** runc's own failure (as opposed to the process's exit status), from its JSON log. */
async function runcError(logPath: string): Promise<string | undefined> {
  const text = await readFile(logPath, "utf8").catch(() => "");
  const errors: string[] = [];
  for (const line of text.split("\n")) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === "error" && entry.msg) errors.push(entry.msg);
    } catch {
      // not a JSON line
    }
  }
  return errors.length ? errors.join("; ") : undefined;
}

/**
 * Run one process in a fresh runc container on an already-mounted rootfs and wait for it.
 * Resolves with its exit status (whatever it is); rejects when the container cannot be set up
 * or started, or on abort. The container, its runc state and bundle are always removed.
 */
export async function runContainer(
  spec: ExecSpec,
  io: ExecIO = {},
  opts: ExecutorOptions = {},
): Promise<ExecResult> {
  const { runcRoot, bundles } = dirsOf(opts);
  const id = spec.id ?? `kiln-${randomBytes(8).toString("hex")}`;
  if (!/^[\w+.-]+$/.test(id)) {
    throw new KilnError("E_EXEC_ID", `invalid container id ${JSON.stringify(id)}`);
  }
  if (!spec.cwd.startsWith("/")) {
    throw new KilnError(
      "E_EXEC_CWD",
      `working directory ${JSON.stringify(spec.cwd)} is not absolute`,
      {
        hint: "WORKDIR must resolve to an absolute path.",
      },
    );
  }
  if (io.signal?.aborted) throw new KilnError("E_EXEC_ABORTED", `container ${id}: aborted`);
  mkdirSync(runcRoot, { recursive: true, mode: 0o700 });
  mkdirSync(bundles, { recursive: true, mode: 0o700 });
  // the owner is in the bundle's name, so a concurrent kiln's stale sweep never sees a bundle
  // whose owner it cannot tell yet
  const owner = await ownerTag();
  const bundle = join(bundles, bundleName(owner, id));
  try {
    mkdirSync(bundle);
  } catch (e) {
    throw new KilnError("E_EXEC_ID", `container ${id} already has a bundle: ${messageOf(e)}`, {
      hint: "Use a unique container id, or run cleanupStaleContainers.",
      cause: e,
    });
  }
  const removeAll = async () => {
    // `runc run` deletes the container when its process exits; only a runc that was itself
    // killed leaves state behind (one process less per step when nothing is left)
    if (exists(join(runcRoot, id))) await deleteContainer(runcRoot, id);
    rmSync(bundle, { recursive: true, force: true });
  };
  const unregister = onCleanup(`container ${id}`, removeAll);
  const cleanup = async () => {
    try {
      await removeAll();
    } finally {
      unregister();
    }
  };
  let result: ExecResult;
  try {
    result = await runInBundle(spec, io, { id, runcRoot, bundle, owner });
  } catch (e) {
    await cleanup().catch(() => undefined);
    throw e;
  }
  await cleanup();
  return result;
}

/** kiln's own effective capabilities: all an insecure RUN can get. */
function ownCapabilities(): bigint {
  const status = readFileSync("/proc/self/status", "utf8");
  return BigInt("0x" + (/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"));
}

async function runInBundle(
  spec: ExecSpec,
  io: ExecIO,
  ctx: { id: string; runcRoot: string; bundle: string; owner: string },
): Promise<ExecResult> {
  const { id, runcRoot, bundle } = ctx;
  const rootfs = resolve(spec.rootfs);
  const user = lookupUser(rootfs, spec.user ?? "");
  const env = withDefaultPath(spec.env);
  ensureCwd(rootfs, spec.cwd, user);
  const pathEnv = env.findLast((e) => e.startsWith("PATH="))?.slice("PATH=".length);
  const args = spec.emulator
    ? await emulatedArgs(rootfs, spec.args, { pathEnv, cwd: spec.cwd })
    : spec.args;

  const hostsPath = join(bundle, "hosts");
  const resolvConfPath = join(bundle, "resolv.conf");
  writeFileSync(hostsPath, hostsFile(spec.hostname ?? DEFAULT_HOSTNAME, spec.extraHosts ?? []));
  writeFileSync(resolvConfPath, containerResolvConf(hostResolvConf(), spec.network));
  const privateBinfmt = await privateBinfmtFor(spec);
  const config = {
    ...buildRuntimeSpec({
      id,
      spec: { ...spec, rootfs },
      args,
      user,
      hostsPath,
      resolvConfPath,
      privateBinfmt,
      ownCapabilities: spec.security === "insecure" ? ownCapabilities() : undefined,
    }),
    annotations: { [OWNER_ANNOTATION]: ctx.owner },
  };
  writeFileSync(join(bundle, "config.json"), JSON.stringify(config));

  const removeStubs = mountStubs(rootfs, [
    "/etc/resolv.conf",
    "/etc/hosts",
    ...spec.mounts.map((m) => m.target),
  ]);
  const logPath = join(bundle, "runc.log");
  let closed = false;
  let aborted = false;
  const killLoop = async () => {
    // The container may not exist yet when the abort comes: retry until runc run returns.
    while (!closed) {
      await run("runc", ["--root", runcRoot, "kill", id, "KILL"], {
        timeoutMs: RUNC_TIMEOUT_MS,
      }).catch(() => undefined);
      await sleep(100);
    }
  };
  const onAbort = () => {
    aborted = true;
    void killLoop();
  };
  if (io.signal?.aborted) {
    removeStubs();
    throw new KilnError("E_EXEC_ABORTED", `container ${id}: aborted`);
  }
  io.signal?.addEventListener("abort", onAbort, { once: true });
  let exitCode: number;
  try {
    const res = await run(
      "runc",
      ["--root", runcRoot, "--log", logPath, "--log-format", "json", "run", "--bundle", bundle, id],
      {
        cwd: bundle,
        killWithParent: true,
        onStdout: io.onStdout ?? (() => undefined),
        onStderr: io.onStderr,
      },
    );
    exitCode = res.exitCode;
  } finally {
    closed = true;
    io.signal?.removeEventListener("abort", onAbort);
    removeStubs();
  }
  if (aborted) throw new KilnError("E_EXEC_ABORTED", `container ${id}: aborted`);
  if (exitCode !== 0) {
    const failure = await runcError(logPath);
    if (failure) {
      throw new KilnError("E_EXEC_START", `cannot start ${JSON.stringify(spec.args)}: ${failure}`, {
        hint: "Check that the command exists in the image and the working directory and user are valid.",
      });
    }
  }
  return { exitCode };
}

/** A bundle directory is named "<owner tag>.<container id>". */
function bundleName(owner: string, id: string): string {
  return `${owner}.${id}`;
}

function parseBundleName(name: string): { owner: string; id?: string } {
  const m = /^(\d+-\d+)\.(.+)$/.exec(name);
  return m ? { owner: m[1]!, id: m[2]! } : { owner: "" };
}

/**
 * The containers under runcRoot. `runc list` fails when a container it is reading goes away
 * (another kiln's RUN ending): that is asked again.
 */
async function listContainers(
  runcRoot: string,
): Promise<{ id: string; annotations?: Record<string, string> }[]> {
  for (let attempt = 1; ; attempt++) {
    const r = await run("runc", ["--root", runcRoot, "list", "--format", "json"], {
      timeoutMs: RUNC_TIMEOUT_MS,
    });
    if (r.exitCode === 0)
      return (JSON.parse(r.stdout.toString("utf8") || "null") ?? []) as {
        id: string;
        annotations?: Record<string, string>;
      }[];
    if (attempt >= 5 || !/no such file or directory/i.test(r.stderr)) {
      throw new KilnError(
        "E_EXEC_CLEANUP",
        `runc --root ${runcRoot} list failed (exit ${r.exitCode}): ${r.stderr.trim()}`,
        { hint: `check kiln's runc state in ${runcRoot}` },
      );
    }
  }
}

/**
 * Crash recovery, run at startup: kill and delete containers (and bundles) whose kiln process
 * is gone, e.g. after a SIGKILL. Returns the ids removed.
 */
export async function cleanupStaleContainers(opts: ExecutorOptions = {}): Promise<string[]> {
  const { runcRoot, bundles } = dirsOf(opts);
  const removed: string[] = [];
  // nothing recorded means nothing to clean: a cached build then starts no runc at all
  if ((await readdir(runcRoot).catch(() => [])).length > 0) {
    for (const c of await listContainers(runcRoot)) {
      if (await isOwnerAlive(c.annotations?.[OWNER_ANNOTATION] ?? "")) continue;
      await deleteContainer(runcRoot, c.id);
      removed.push(c.id);
    }
  }
  for (const name of await readdir(bundles).catch(() => [])) {
    const { owner, id } = parseBundleName(name);
    if (await isOwnerAlive(owner)) continue;
    if (id !== undefined) await deleteContainer(runcRoot, id);
    await rm(join(bundles, name), { recursive: true, force: true });
    if (id !== undefined && !removed.includes(id)) removed.push(id);
  }
  return removed;
}
