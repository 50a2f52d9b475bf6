// Dockerfile compatibility: builds every case under bench/compat/cases with a peer and with kiln
// and prints where the images differ. Not part of CI.
//
//   node --import tsx bench/compat/run.ts [case…]
//
// Peers (COMPAT_PEER): "buildkit" (default) — current BuildKit through buildctl, started here
// from BUILDKIT_BIN (default /var/tmp/buildkit-ref/bin, built by the shared buildkit-from-source
// script), every case built for COMPAT_PLATFORMS (default linux/amd64,linux/arm64,linux/arm/v7)
// with SOURCE_DATE_EPOCH and rewrite-timestamp, compared per platform down to the config bytes,
// diff_ids, files and mtimes; "docker20" — the older mode: Docker 20.10's BuildKit v0.8
// (docker.io: bash bench/setup), linux/amd64, config fields, history and tree.
//
// Each case is a directory: a Dockerfile (the token BASE_IMAGE stands for the fixture busybox in
// a loopback registry), context files, and optionally `prepare.sh` (run in a temp copy of the
// case to make what git cannot hold: tars, modes, empty dirs; removed before the build), `args`
// (KEY=VALUE lines passed as build args to both builders), `opts` (`target=NAME`,
// `platforms=a,b` lines), `expect` (docker20) and `expect-buildkit` (differences by design).
// Env: KILN (the kiln command, default <repo>/bin/kiln), COMPAT_JSON (write all results there),
// COMPAT_REGISTRY (use this running registry holding base/busybox instead of starting one).
// The peer's summaries are cached in .cache/compat by case content, so reruns only build kiln.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { startRegistry } from "../../test/fixtures/registry.js";
import { pushBaseImages } from "../../test/fixtures/base-images.js";
import { readDockerArchive, readOciArchive } from "./image.js";
import { compare, explain, parseExpect, type Diff, type Outcome, type Peer } from "./compare.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const casesDir = join(here, "cases");
const cacheDir = join(repo, ".cache", "compat");
const DOCKER = "/usr/bin/docker";
const DOCKERD = "/usr/sbin/dockerd";
const BUILDKIT_BIN = process.env.BUILDKIT_BIN ?? "/var/tmp/buildkit-ref/bin";
const PEER: Peer = process.env.COMPAT_PEER === "docker20" ? "docker20" : "buildkit";
const PLATFORMS =
  PEER === "docker20"
    ? "linux/amd64"
    : (process.env.COMPAT_PLATFORMS ?? "linux/amd64,linux/arm64,linux/arm/v7");
/** SOURCE_DATE_EPOCH of every buildkit-mode build, so that timestamps and diff_ids compare. */
const EPOCH = "1700000000";
/** The registry port is pinned so cached peer results stay valid across runs. */
const REGISTRY_PORT = 5391;

/** Bump when what is recorded about an image changes, so cached peer results are rebuilt. */
const SUMMARY_VERSION = 5;

interface CaseResult {
  name: string;
  peer: Outcome;
  kiln: Outcome;
  diffs: Diff[];
}

function sh(argv: string[], env: Record<string, string> = {}, cwd?: string) {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...env },
    cwd,
    encoding: "utf8",
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, out: (r.stdout ?? "") + (r.stderr ?? "") };
}

function tail(s: string, n = 6): string {
  return s.trimEnd().split("\n").slice(-n).join("\n");
}

async function hashDir(dir: string): Promise<string> {
  const h = createHash("sha256");
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      // what kiln is expected to differ in
      if (rel === "" && (e.name === "expect" || e.name === "expect-buildkit")) continue;
      const p = join(d, e.name);
      h.update(`${rel}/${e.name}\0${e.isDirectory() ? "d" : e.isSymbolicLink() ? "l" : "f"}\0`);
      if (e.isDirectory()) await walk(p, `${rel}/${e.name}`);
      else if (!e.isSymbolicLink()) h.update(await readFile(p));
    }
  };
  await walk(dir, "");
  return h.digest("hex").slice(0, 20);
}

/** A temp copy of the case with the base image filled in and prepare.sh applied. */
async function materialize(caseDir: string, base: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-compat-ctx-"));
  await cp(caseDir, dir, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  const df = join(dir, "Dockerfile");
  await writeFile(df, (await readFile(df, "utf8")).replace(/\bBASE_IMAGE\b/g, base));
  if (existsSync(join(dir, "prepare.sh"))) {
    const r = sh(["bash", "prepare.sh"], {}, dir);
    if (r.code !== 0) throw new Error(`prepare.sh of ${caseDir}: ${r.out}`);
    await rm(join(dir, "prepare.sh"));
  }
  // One fixed stamp for everything, so files made by prepare.sh compare across runs too.
  const t = sh(["find", dir, "-exec", "touch", "-h", "-d", "@1577836800", "{}", "+"]);
  if (t.code !== 0) throw new Error(`touch: ${t.out}`);
  for (const f of ["args", "opts", "expect", "expect-buildkit"])
    await rm(join(dir, f), { force: true });
  return dir;
}

/** What a case asks of both builders. */
interface CaseOptions {
  /** KEY=VALUE build args */
  args: string[];
  target?: string;
  platforms: string;
}

async function lines(f: string): Promise<string[]> {
  if (!existsSync(f)) return [];
  return (await readFile(f, "utf8")).split("\n").filter((l) => l.trim() !== "");
}

async function caseOptions(caseDir: string): Promise<CaseOptions> {
  const args = await lines(join(caseDir, "args"));
  if (PEER === "buildkit" && !args.some((a) => a.startsWith("SOURCE_DATE_EPOCH=")))
    args.push(`SOURCE_DATE_EPOCH=${EPOCH}`);
  const o: CaseOptions = { args, platforms: PLATFORMS };
  for (const l of await lines(join(caseDir, "opts"))) {
    const [k, v] = [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)];
    if (k === "target") o.target = v;
    else if (k === "platforms" && PEER === "buildkit") o.platforms = v;
  }
  return o;
}

interface Builder {
  build: (name: string, ctx: string, o: CaseOptions, out: string) => Promise<Outcome>;
  stop: () => Promise<void>;
}

/** Spawns a daemon in its own process group; stop() ends that group only. */
function daemon(
  argv: string[],
  logFile: string,
): { stop: () => Promise<void>; exited: () => boolean } {
  const log = openSync(logFile, "a");
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", log, log], detached: true });
  closeSync(log);
  return {
    exited: () => child.exitCode !== null,
    stop: async () => {
      if (child.exitCode !== null || child.pid === undefined) return;
      process.kill(-child.pid, "SIGTERM");
      for (let i = 0; i < 80 && child.exitCode === null; i++) await sleep(250);
    },
  };
}

async function startBuildkit(work: string, registry: string): Promise<Builder> {
  const buildkitd = join(BUILDKIT_BIN, "buildkitd");
  const buildctl = join(BUILDKIT_BIN, "buildctl");
  if (!existsSync(buildkitd) || !existsSync(buildctl))
    throw new Error(`no buildkitd/buildctl in ${BUILDKIT_BIN} (set BUILDKIT_BIN)`);
  await mkdir(work, { recursive: true });
  const sock = `unix://${join(work, "buildkitd.sock")}`;
  const config = join(work, "buildkitd.toml");
  await writeFile(
    config,
    [
      "[worker.oci]",
      "  enabled = true",
      `  platforms = ${JSON.stringify(PLATFORMS.split(","))}`,
      "[worker.containerd]",
      "  enabled = false",
      `[registry."${registry}"]`,
      "  http = true",
      "  insecure = true",
      "",
    ].join("\n"),
  );
  const d = daemon(
    [buildkitd, "--config", config, "--root", join(work, "root"), "--addr", sock],
    join(work, "buildkitd.log"),
  );
  for (let i = 0; i < 60; i++) {
    if (sh([buildctl, "--addr", sock, "debug", "workers"]).code === 0) break;
    if (d.exited() || i === 59) {
      await d.stop();
      const log = await readFile(join(work, "buildkitd.log"), "utf8");
      throw new Error(`buildkitd did not start: ${tail(log)}`);
    }
    await sleep(500);
  }
  return {
    stop: d.stop,
    build: async (_name, ctx, o, out) => {
      // buildctl shares one local-source snapshot named "context" across builds and syncs each
      // context into it, skipping files whose size and mtime match what an earlier case left
      // (every case is stamped alike): drop those snapshots before each case
      sh([buildctl, "--addr", sock, "prune", "--filter", "type==source.local"]);
      const started = Math.floor(Date.now() / 1000);
      const b = sh([
        buildctl,
        "--addr",
        sock,
        "build",
        "--progress",
        "plain",
        "--frontend",
        "dockerfile.v0",
        "--local",
        `context=${ctx}`,
        "--local",
        `dockerfile=${ctx}`,
        "--opt",
        `platform=${o.platforms}`,
        "--opt",
        "force-network-mode=none",
        ...(o.target ? ["--opt", `target=${o.target}`] : []),
        ...o.args.flatMap((a) => ["--opt", `build-arg:${a}`]),
        "--output",
        `type=oci,dest=${out},rewrite-timestamp=true`,
      ]);
      if (b.code !== 0) return { ok: false, error: tail(b.out) };
      return { ok: true, images: await readOciArchive(out), started };
    },
  };
}

interface Docker {
  env: Record<string, string>;
  stop: () => Promise<void>;
}

async function startDocker(work: string, registry: string): Promise<Docker> {
  if (!existsSync(DOCKER) || !existsSync(DOCKERD))
    throw new Error("docker.io (Docker 20.10) is not installed: bash bench/setup");
  await mkdir(work, { recursive: true });
  const sock = join(work, "docker.sock");
  const config = join(work, "daemon.json");
  await writeFile(
    config,
    JSON.stringify({
      bridge: "none",
      iptables: false,
      "ip-forward": false,
      "ip-masq": false,
      "insecure-registries": [registry],
      features: { buildkit: true },
    }),
  );
  const d = daemon(
    [
      DOCKERD,
      "--config-file",
      config,
      "--data-root",
      join(work, "data"),
      "--exec-root",
      join(work, "exec"),
      "--pidfile",
      join(work, "docker.pid"),
      "-H",
      `unix://${sock}`,
    ],
    join(work, "dockerd.log"),
  );
  const env = {
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: join(work, "client"),
    DOCKER_BUILDKIT: "1",
  };
  const stop = d.stop;
  for (let i = 0; i < 60; i++) {
    if (sh([DOCKER, "version"], env).code === 0) return { env, stop };
    if (d.exited()) break;
    await sleep(500);
  }
  await stop();
  throw new Error(
    `dockerd did not start: ${tail(await readFile(join(work, "dockerd.log"), "utf8"))}`,
  );
}

function dockerBuilder(docker: Docker): Builder {
  return {
    stop: docker.stop,
    build: async (name, ctx, o, out) => {
      const tag = `compat/${name}:latest`;
      const started = Math.floor(Date.now() / 1000);
      const b = sh(
        [
          DOCKER,
          "build",
          "--platform",
          o.platforms,
          "--network",
          "none",
          ...(o.target ? ["--target", o.target] : []),
          ...o.args.flatMap((a) => ["--build-arg", a]),
          "-t",
          tag,
          ctx,
        ],
        docker.env,
      );
      if (b.code !== 0) return { ok: false, error: tail(b.out) };
      const s = sh([DOCKER, "save", "-o", out, tag], docker.env);
      sh([DOCKER, "rmi", tag], docker.env);
      if (s.code !== 0) return { ok: false, error: `docker save: ${tail(s.out)}` };
      return { ok: true, images: { [o.platforms]: await readDockerArchive(out) }, started };
    },
  };
}

async function buildKiln(
  kiln: string[],
  root: string,
  ctx: string,
  o: CaseOptions,
  out: string,
): Promise<Outcome> {
  const started = Math.floor(Date.now() / 1000);
  const b = sh(
    [
      ...kiln,
      "build",
      "--platform",
      o.platforms,
      "--network",
      "none",
      "--progress",
      "plain",
      ...(o.target ? ["--target", o.target] : []),
      ...o.args.flatMap((a) => ["--build-arg", a]),
      "-o",
      PEER === "docker20" ? `type=docker,dest=${out}` : `type=oci,dest=${out}`,
      ctx,
    ],
    { KILN_ROOT: root },
  );
  if (b.code !== 0) return { ok: false, error: tail(b.out) };
  const images =
    PEER === "docker20"
      ? { [o.platforms]: await readDockerArchive(out) }
      : await readOciArchive(out);
  return { ok: true, images, started };
}

function statusOf(d: Outcome, diffs: Diff[]): string {
  if (diffs.length === 0) return d.ok ? "same" : "same (both fail)";
  return diffs.every((x) => x.reason !== undefined) ? "by-design" : "DIFFERS";
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const names = (await readdir(casesDir))
    .filter((n) => only.length === 0 || only.includes(n))
    .sort();
  const kiln = (process.env.KILN ?? join(repo, "bin", "kiln")).split(" ");
  const work = await mkdtemp(join(tmpdir(), "kiln-compat-"));
  await mkdir(cacheDir, { recursive: true });
  const own = process.env.COMPAT_REGISTRY
    ? undefined
    : await startRegistry({ port: REGISTRY_PORT });
  const registryHost = process.env.COMPAT_REGISTRY ?? own!.host;
  let peer: Builder | undefined;
  const results: CaseResult[] = [];
  try {
    if (own) await pushBaseImages(registryHost);
    const base = `${registryHost}/base/busybox:latest`;
    for (const name of names) {
      const caseDir = join(casesDir, name);
      const o = await caseOptions(caseDir);
      const ctx = await materialize(caseDir, base);
      try {
        const key = `${PEER}-${await hashDir(caseDir)}-${registryHost.replace(/\W/g, "_")}-${o.platforms.replace(/\W/g, "_")}-v${SUMMARY_VERSION}`;
        const cached = join(cacheDir, `${name}-${key}.json`);
        let d: Outcome;
        if (existsSync(cached)) d = JSON.parse(await readFile(cached, "utf8")) as Outcome;
        else {
          peer ??=
            PEER === "docker20"
              ? dockerBuilder(await startDocker(join(work, "docker"), registryHost))
              : await startBuildkit(join(work, "buildkit"), registryHost);
          d = await peer.build(name, ctx, o, join(work, `${name}.peer.tar`));
          await writeFile(cached, JSON.stringify(d));
        }
        const k = await buildKiln(
          kiln,
          join(work, "kiln-root"),
          ctx,
          o,
          join(work, `${name}.kiln.tar`),
        );
        await rm(join(work, `${name}.peer.tar`), { force: true });
        await rm(join(work, `${name}.kiln.tar`), { force: true });
        const diffs = compare(d, k, PEER);
        const expectFile = join(caseDir, PEER === "docker20" ? "expect" : "expect-buildkit");
        explain(
          diffs,
          existsSync(expectFile) ? parseExpect(await readFile(expectFile, "utf8")) : [],
          PEER,
        );
        results.push({ name, peer: d, kiln: k, diffs });
        process.stdout.write(`${statusOf(d, diffs).padEnd(16)} ${name}\n`);
        if (!d.ok && !k.ok) {
          process.stdout.write(`    peer: ${lastLine(d.error)}\n    kiln: ${lastLine(k.error)}\n`);
        }
        for (const x of diffs.filter((x) => x.reason === undefined))
          process.stdout.write(`    ${x.text}\n`);
        for (const reason of new Set(diffs.flatMap((x) => x.reason ?? [])))
          process.stdout.write(`    (by design: ${reason})\n`);
        for (const x of diffs.filter((x) => x.kind === "build" && x.reason !== undefined))
          for (const line of x.text.split("\n").filter((l) => l.includes("kiln /")))
            process.stdout.write(`    ${line.trim()}\n`);
      } finally {
        await rm(ctx, { recursive: true, force: true });
      }
    }
  } finally {
    await peer?.stop();
    await own?.stop();
    await rm(work, { recursive: true, force: true });
  }
  const counts = new Map<string, number>();
  for (const r of results) {
    const st = statusOf(r.peer, r.diffs);
    counts.set(st, (counts.get(st) ?? 0) + 1);
  }
  process.stdout.write(
    `\n${results.length} cases: ${[...counts].map(([s, n]) => `${n} ${s}`).join(", ")}\n`,
  );
  if (process.env.COMPAT_JSON !== undefined)
    await writeFile(process.env.COMPAT_JSON, JSON.stringify(results, null, 2));
}

/** The line of a failed build's output that says why. */
function lastLine(out: string): string {
  const ls = out.trim().split("\n");
  return (ls.findLast((l) => /error|ERROR|failed/.test(l)) ?? ls.at(-1) ?? "").trim();
}

await main();
