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
import { readDockerArchive } from "./image.js";
import { compare, explain, parseExpect, type Diff, type Outcome } from "./compare.js";

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
const SUMMARY_VERSION = 3;

interface CaseResult {
  name: string;
  docker: Outcome;
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
      if (rel === "" && e.name === "expect") continue; // what kiln is expected to differ in
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
  await rm(join(dir, "args"), { force: true });
  await rm(join(dir, "expect"), { force: true });
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
        const expectFile = join(caseDir, "expect");
        explain(
          diffs,
          existsSync(expectFile) ? parseExpect(await readFile(expectFile, "utf8")) : [],
        );
        results.push({ name, docker: d, kiln: k, diffs });
        process.stdout.write(`${statusOf(d, diffs).padEnd(16)} ${name}\n`);
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
    await docker?.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
  const counts = new Map<string, number>();
  for (const r of results) {
    const st = statusOf(r.docker, r.diffs);
    counts.set(st, (counts.get(st) ?? 0) + 1);
  }
  process.stdout.write(
    `\n${results.length} cases: ${[...counts].map(([s, n]) => `${n} ${s}`).join(", ")}\n`,
  );
  if (process.env.COMPAT_JSON !== undefined)
    await writeFile(process.env.COMPAT_JSON, JSON.stringify(results, null, 2));
}

await main();
