// Dockerfile compatibility: builds every case under bench/compat/cases with Docker 20.10's
// BuildKit and with kiln (linux/amd64), and prints where the images differ: config, history and
// the final file tree. Not part of CI (it needs docker.io: bash bench/setup).
//
//   node --import tsx bench/compat/run.ts [case…]
//
// Each case is a directory: a Dockerfile (the token BASE_IMAGE stands for the fixture busybox in
// a loopback registry), context files, and optionally `prepare.sh` (run in a temp copy of the
// case to make what git cannot hold: tars, modes, empty dirs; removed before the build) and
// `args` (KEY=VALUE lines passed as --build-arg to both builders).
// Env: KILN (the kiln command, default <repo>/bin/kiln), COMPAT_JSON (write all results there).
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
import { readDockerArchive, type ImageSummary } from "./image.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const casesDir = join(here, "cases");
const cacheDir = join(repo, ".cache", "compat");
const DOCKER = "/usr/bin/docker";
const DOCKERD = "/usr/sbin/dockerd";
const PLATFORM = "linux/amd64";
/** The registry port is pinned so cached peer results stay valid across runs. */
const REGISTRY_PORT = 5391;

/** Bump when what is recorded about an image changes, so cached peer results are rebuilt. */
const SUMMARY_VERSION = 2;

/** `started`: seconds when the build began; files stamped later were made by the build. */
type Outcome = { ok: true; image: ImageSummary; started: number } | { ok: false; error: string };

interface CaseResult {
  name: string;
  docker: Outcome;
  kiln: Outcome;
  diffs: string[];
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
  await rm(join(dir, "args"), { force: true });
  await rm(join(dir, "NOTE"), { force: true });
  return dir;
}

async function buildArgs(caseDir: string): Promise<string[]> {
  const f = join(caseDir, "args");
  if (!existsSync(f)) return [];
  return (await readFile(f, "utf8"))
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => ["--build-arg", l]);
}

interface Docker {
  env: Record<string, string>;
  stop(): Promise<void>;
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
  const log = openSync(join(work, "dockerd.log"), "a");
  const child = spawn(
    DOCKERD,
    [
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
    { stdio: ["ignore", log, log], detached: true },
  );
  closeSync(log);
  const env = {
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: join(work, "client"),
    DOCKER_BUILDKIT: "1",
  };
  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    process.kill(-child.pid, "SIGTERM");
    for (let i = 0; i < 80 && child.exitCode === null; i++) await sleep(250);
  };
  for (let i = 0; i < 60; i++) {
    if (sh([DOCKER, "version"], env).code === 0) return { env, stop };
    if (child.exitCode !== null) break;
    await sleep(500);
  }
  await stop();
  throw new Error(
    `dockerd did not start: ${tail(await readFile(join(work, "dockerd.log"), "utf8"))}`,
  );
}

async function buildDocker(
  docker: Docker,
  name: string,
  ctx: string,
  args: string[],
  out: string,
): Promise<Outcome> {
  const tag = `compat/${name}:latest`;
  const started = Math.floor(Date.now() / 1000);
  const b = sh(
    [DOCKER, "build", "--platform", PLATFORM, "--network", "none", ...args, "-t", tag, ctx],
    docker.env,
  );
  if (b.code !== 0) return { ok: false, error: tail(b.out) };
  const s = sh([DOCKER, "save", "-o", out, tag], docker.env);
  sh([DOCKER, "rmi", tag], docker.env);
  if (s.code !== 0) return { ok: false, error: `docker save: ${tail(s.out)}` };
  return { ok: true, image: await readDockerArchive(out), started };
}

async function buildKiln(
  kiln: string[],
  root: string,
  ctx: string,
  args: string[],
  out: string,
): Promise<Outcome> {
  const started = Math.floor(Date.now() / 1000);
  const b = sh(
    [
      ...kiln,
      "build",
      "--platform",
      PLATFORM,
      "--network",
      "none",
      "--progress",
      "plain",
      ...args,
      "-o",
      `type=docker,dest=${out}`,
      ctx,
    ],
    { KILN_ROOT: root },
  );
  if (b.code !== 0) return { ok: false, error: tail(b.out) };
  return { ok: true, image: await readDockerArchive(out), started };
}

function show(v: unknown): string {
  return v === undefined ? "(unset)" : JSON.stringify(v);
}

export function compare(d: Outcome, k: Outcome): string[] {
  if (!d.ok && !k.ok) return [];
  if (!d.ok) return [`docker failed, kiln built:\n      ${d.error.replace(/\n/g, "\n      ")}`];
  if (!k.ok) return [`kiln failed, docker built:\n      ${k.error.replace(/\n/g, "\n      ")}`];
  const a = d.image;
  const b = k.image;
  const diffs: string[] = [];
  for (const key of new Set([...Object.keys(a.config), ...Object.keys(b.config)])) {
    const x = show(a.config[key]);
    const y = show(b.config[key]);
    if (x !== y) diffs.push(`config.${key}: docker ${x} | kiln ${y}`);
  }
  const n = Math.max(a.history.length, b.history.length);
  for (let i = 0; i < n; i++) {
    const x = a.history[i];
    const y = b.history[i];
    const fx = x === undefined ? "(none)" : `${x.empty_layer ? "[empty] " : ""}${x.created_by}`;
    const fy = y === undefined ? "(none)" : `${y.empty_layer ? "[empty] " : ""}${y.created_by}`;
    if (fx !== fy)
      diffs.push(
        `history[${i}]: docker ${fx}\n      ${" ".repeat(String(i).length + 8)}kiln ${fy}`,
      );
  }
  if (a.layers !== b.layers) diffs.push(`layers: docker ${a.layers} | kiln ${b.layers}`);
  for (const p of new Set([...Object.keys(a.tree), ...Object.keys(b.tree)])) {
    const x = a.tree[p];
    const y = b.tree[p];
    if (x !== y) {
      diffs.push(`/${p}: docker ${x ?? "(absent)"} | kiln ${y ?? "(absent)"}`);
      if (x?.startsWith("file") && y?.startsWith("file") && a.small[p] !== undefined)
        diffs.push(`  contents: docker ${show(a.small[p])} | kiln ${show(b.small[p])}`);
      continue;
    }
    // Only stamps older than the build came from the context (or an archive) and must agree.
    const ma = a.mtimes[p];
    const mb = b.mtimes[p];
    if (ma !== undefined && mb !== undefined && ma < d.started - 1 && ma !== mb)
      diffs.push(`/${p} mtime: docker ${ma} | kiln ${mb}`);
  }
  return diffs;
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const names = (await readdir(casesDir))
    .filter((n) => only.length === 0 || only.includes(n))
    .sort();
  const kiln = (process.env.KILN ?? join(repo, "bin", "kiln")).split(" ");
  const work = await mkdtemp(join(tmpdir(), "kiln-compat-"));
  await mkdir(cacheDir, { recursive: true });
  const registry = await startRegistry({ port: REGISTRY_PORT });
  let docker: Docker | undefined;
  const results: CaseResult[] = [];
  try {
    await pushBaseImages(registry.host);
    const base = `${registry.host}/base/busybox:latest`;
    for (const name of names) {
      const caseDir = join(casesDir, name);
      const args = await buildArgs(caseDir);
      const ctx = await materialize(caseDir, base);
      try {
        const key = `${await hashDir(caseDir)}-${registry.host.replace(/\W/g, "_")}-v${SUMMARY_VERSION}`;
        const cached = join(cacheDir, `${name}-${key}.json`);
        let d: Outcome;
        if (existsSync(cached)) d = JSON.parse(await readFile(cached, "utf8")) as Outcome;
        else {
          docker ??= await startDocker(join(work, "docker"), registry.host);
          d = await buildDocker(docker, name, ctx, args, join(work, `${name}.docker.tar`));
          await writeFile(cached, JSON.stringify(d));
        }
        const k = await buildKiln(
          kiln,
          join(work, "kiln-root"),
          ctx,
          args,
          join(work, `${name}.kiln.tar`),
        );
        const diffs = compare(d, k);
        results.push({ name, docker: d, kiln: k, diffs });
        const status = diffs.length === 0 ? (d.ok ? "same" : "same (both fail)") : "DIFFERS";
        process.stdout.write(`${status.padEnd(16)} ${name}\n`);
        for (const line of diffs) process.stdout.write(`    ${line}\n`);
      } finally {
        await rm(ctx, { recursive: true, force: true });
      }
    }
  } finally {
    await docker?.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
  const same = results.filter((r) => r.diffs.length === 0).length;
  process.stdout.write(`\n${same}/${results.length} cases the same\n`);
  if (process.env.COMPAT_JSON !== undefined)
    await writeFile(process.env.COMPAT_JSON, JSON.stringify(results, null, 2));
}

await main();
