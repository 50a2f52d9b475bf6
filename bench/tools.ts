// The builders under test. Each tool keeps all its state under its own dir in the bench's work
// dir, so "cold" means that dir emptied, and nothing of the machine's own configuration is used.
import { spawn } from "node:child_process";
import { existsSync, openSync, closeSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { shellQuote } from "../src/process/brief.js";
import { alive, probe, removeTree, stopGroup, type Cmd } from "./proc.js";

export const TOOL_NAMES = [
  "kiln",
  "buildah",
  "podman",
  "docker",
  "buildctl",
  "runs-alone",
] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export interface BuildJob {
  context: string;
  platforms: readonly string[];
  /** registry/repo:tag to push the multi-platform index to. */
  ref: string;
  /** a registry cache ref to import before building */
  cacheFrom?: string;
  /** a registry cache ref to export every step to (mode=max) */
  cacheTo?: string;
}

export interface Tool {
  readonly name: ToolName;
  /** One line naming the version that ran. */
  readonly version: string;
  /** Empties every cache the tool has (untimed). */
  reset(): Promise<void>;
  /** Untimed housekeeping right before a build (e.g. dropping a local manifest list). */
  beforeBuild(job: BuildJob): Promise<void>;
  /** The commands of one build-and-push, timed together. */
  build(job: BuildJob): Cmd[];
  /** Whether `build` honours the job's cacheFrom/cacheTo (a registry build cache). */
  readonly remoteCache: boolean;
  /** Measured in the cold scenario only (a floor, not a builder: it has no cache). */
  readonly coldOnly?: boolean;
  /** Stops whatever the tool started. */
  stop(): Promise<void>;
}

export interface ToolEnv {
  /** The kiln executable to measure (normally <repo>/bin/kiln). */
  kiln: string;
  /** This tool's private state dir (created and removed by the caller). */
  dir: string;
  registry: string;
}

/** Why a tool cannot run here; the run reports it as skipped. */
export class Skip extends Error {}

export async function startTool(name: ToolName, env: ToolEnv): Promise<Tool> {
  await mkdir(env.dir, { recursive: true });
  switch (name) {
    case "kiln":
      return startKiln(env);
    case "buildah":
    case "podman":
      return startContainersTool(name, env);
    case "docker":
      return startDocker(env);
    case "buildctl":
      return startBuildctl(env);
    case "runs-alone":
      return startRunsAlone(env);
  }
}

/**
 * Not a builder: the floor a builder is measured against. The workload's RUN steps alone, each
 * platform's in a chroot of the base image (foreign ones under QEMU through binfmt_misc, as in
 * every builder here), the platforms at once as a builder runs them. What a build takes beyond
 * this is the builder's own cost (the cpu goal: kiln within 1.05x of it). Only Dockerfiles of
 * FROM, COPY <src> <dest> (one source), RUN (shell form) and CMD can be replayed; others are
 * skipped. What the COPY steps bring is put in place before the RUNs, untimed.
 */
async function startRunsAlone(env: ToolEnv): Promise<Tool> {
  await requireTool(["skopeo", "--version"], "skopeo");
  await requireTool(["umoci", "--version"], "umoci");
  const roots = join(env.dir, "roots");
  let scripts: string[] = [];
  return {
    name: "runs-alone",
    version: "the RUN steps alone, in chroots of the base image (QEMU via binfmt_misc)",
    reset: async () => {},
    beforeBuild: async (job) => {
      // untimed: a fresh root per platform, with what the COPY steps put there
      await removeTree(roots);
      await mkdir(roots, { recursive: true });
      const steps = replayableSteps(await readFile(join(job.context, "Dockerfile"), "utf8"));
      scripts = [];
      for (const [i, platform] of job.platforms.entries()) {
        const [os, arch, variant] = platform.split("/");
        const layout = join(roots, `layout-${i}`);
        const root = join(roots, `root-${i}`);
        await runChecked([
          "skopeo",
          "copy",
          "--quiet",
          "--src-tls-verify=false",
          `--override-os=${os}`,
          `--override-arch=${arch}`,
          ...(variant ? [`--override-variant=${variant}`] : []),
          `docker://${steps.from}`,
          `oci:${layout}:base`,
        ]);
        await runChecked(["umoci", "raw", "unpack", "--image", `${layout}:base`, root]);
        // the devices a RUN finds in a container
        await mkdir(join(root, "dev"), { recursive: true });
        for (const [name, minor] of [
          ["null", 3],
          ["zero", 5],
          ["urandom", 9],
        ] as const)
          await runChecked([
            "mknod",
            "-m",
            "666",
            join(root, "dev", name),
            "c",
            "1",
            String(minor),
          ]);
        for (const c of steps.copies) await replayCopy(join(job.context, c.src), root, c.dest);
        const runs = steps.runs.map((r) => `chroot ${root} /bin/sh -c ${shellQuote(r)}`);
        scripts.push(`( ${runs.join(" && ")} ) > /dev/null`);
      }
    },
    remoteCache: false,
    coldOnly: true,
    build: () => [
      {
        // every platform at once; the first failure fails the step
        argv: [
          "sh",
          "-c",
          `${scripts.map((s, i) => `${s} & p${i}=$!`).join("; ")}; ` +
            scripts.map((_, i) => `wait $p${i} || exit 1`).join("; "),
        ],
      },
    ],
    stop: () => removeTree(roots),
  };
}

/**
 * COPY <src> <dest> into a chroot as a builder does it for one source: a directory's contents
 * go into dest, a file into dest (or into dest/ when dest ends with a slash).
 */
async function replayCopy(src: string, root: string, dest: string): Promise<void> {
  const target = join(root, dest);
  if ((await stat(src)).isDirectory()) {
    await mkdir(target, { recursive: true });
    await runChecked(["cp", "-a", "--", `${src}/.`, target]);
    return;
  }
  const intoDir = dest.endsWith("/");
  await mkdir(intoDir ? target : dirname(target), { recursive: true });
  await runChecked(["cp", "--", src, intoDir ? `${target}/` : target]);
}

function replayableSteps(dockerfile: string): {
  from: string;
  copies: { src: string; dest: string }[];
  runs: string[];
} {
  let from = "";
  const copies: { src: string; dest: string }[] = [];
  const runs: string[] = [];
  for (const line of dockerfile.replace(/\\\n/g, " ").split("\n")) {
    const m = /^(\w+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, op, rest] = m as unknown as [string, string, string];
    const args = rest.split(/\s+/);
    if (op === "FROM" && args.length === 1) from = rest;
    else if (op === "COPY" && args.length === 2 && !rest.includes("--"))
      copies.push({ src: args[0]!, dest: args[1]! });
    else if (op === "RUN" && !rest.startsWith("[") && !rest.startsWith("--")) runs.push(rest);
    else if (op !== "CMD") throw new Skip(`cannot replay "${line.trim()}" without a builder`);
  }
  if (from === "" || runs.length === 0) throw new Skip("no FROM or no RUN to replay");
  return { from, copies, runs };
}

async function runChecked(argv: string[]): Promise<void> {
  const r = await probe(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} failed (${r.code}): ${lastLines(r.out)}`);
}

function firstLine(s: string): string {
  return s.trim().split("\n")[0] ?? "";
}

function lastLines(s: string, n = 5): string {
  return s.trimEnd().split("\n").slice(-n).join("\n");
}

/** Its first output line (the version); ENOENT from spawn means not installed. */
async function requireTool(
  argv: string[],
  what: string,
  hint = "bash bench/setup installs it",
): Promise<string> {
  const r = await probe(argv);
  if (r.code === "ENOENT") throw new Skip(`${what} is not installed (${hint})`);
  if (r.code !== 0) throw new Skip(`${argv.join(" ")} failed (${r.code}): ${lastLines(r.out)}`);
  return firstLine(r.out);
}

/** Why kiln cannot build yet, or undefined when `kiln build --help` describes a build command. */
export async function kilnBuildWorks(bin: string): Promise<string | undefined> {
  const r = await probe([bin, "build", "--help"]);
  if (r.code !== 0) return `${bin} build --help failed (${r.code}): ${lastLines(r.out, 3)}`;
  // An older CLI without the command answers with its top-level help and exit 0.
  if (!r.out.includes("--platform")) return `${bin} has no build command yet`;
  return undefined;
}

/** kiln changes quickly: the commit (and whether its tree had edits) says which one ran. */
async function checkoutState(dir: string): Promise<string> {
  const head = await probe(["git", "-C", dir, "rev-parse", "--short", "HEAD"]);
  if (head.code !== 0) return `from ${dir}, not a git checkout`;
  const dirty = await probe(["git", "-C", dir, "status", "--porcelain", "--", "src", "bin"]);
  return `${firstLine(head.out)}${dirty.out.trim() ? ", uncommitted changes" : ""}`;
}

async function startKiln(env: ToolEnv): Promise<Tool> {
  const bin = env.kiln;
  const broken = await kilnBuildWorks(bin);
  if (broken !== undefined) throw new Skip(broken);
  const version = `${firstLine((await probe([bin, "--version"])).out)} (${await checkoutState(dirname(dirname(bin)))})`;
  const root = join(env.dir, "root");
  return {
    name: "kiln",
    version: `kiln ${version}`,
    // Cold is an emptied cache in a state dir that stays, as BuildKit's `buildctl prune --all`
    // leaves its daemon's root: no image, layer, snapshot, cache record or pushed-blob record
    // is left (kiln prune --all), the metadata database and the snapshot driver's choice are.
    reset: async () => {
      await mkdir(root, { recursive: true });
      const r = await probe([bin, "prune", "--all", "--force"], { KILN_ROOT: root });
      if (r.code !== 0) throw new Error(`kiln prune --all failed: ${r.out}`);
    },
    beforeBuild: async () => {},
    remoteCache: true,
    build: (job) => [
      {
        argv: [
          bin,
          "build",
          "--platform",
          job.platforms.join(","),
          "-t",
          job.ref,
          "--push",
          "--progress",
          "plain",
          ...(job.cacheFrom ? ["--cache-from", job.cacheFrom] : []),
          ...(job.cacheTo ? ["--cache-to", `type=registry,ref=${job.cacheTo},mode=max`] : []),
          job.context,
        ],
        env: { KILN_ROOT: root },
      },
    ],
    stop: async () => {},
  };
}

/** buildah and podman share containers/storage and the same build flags. */
async function startContainersTool(name: "buildah" | "podman", env: ToolEnv): Promise<Tool> {
  const version = await requireTool([name, "--version"], name);
  const root = join(env.dir, "storage");
  const runroot = join(env.dir, "run");
  const global = ["--root", root, "--runroot", runroot, "--storage-driver", "overlay"];
  // crun 1.8 fails on this kernel's hybrid cgroups; podman also needs no systemd.
  const podmanGlobal = [
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
  ];
  const pre = name === "podman" ? [name, ...global, ...podmanGlobal] : [name, ...global];
  const runtime = name === "buildah" ? ["--runtime", "runc"] : [];
  const list = "kiln-bench-list";
  return {
    name,
    version,
    reset: async () => {
      await removeTree(root);
      await removeTree(runroot);
    },
    // A list that already exists would collect this build's images next to the last build's.
    beforeBuild: async () => {
      await probe([...pre, "manifest", "rm", list]);
    },
    remoteCache: false,
    build: (job) => [
      {
        argv: [
          ...pre,
          "build",
          ...runtime,
          "--layers",
          "--network",
          "none",
          "--tls-verify=false",
          "--platform",
          job.platforms.join(","),
          "--manifest",
          list,
          "-f",
          join(job.context, "Dockerfile"),
          job.context,
        ],
      },
      {
        argv: [
          ...pre,
          "manifest",
          "push",
          "--all",
          "--tls-verify=false",
          "--format",
          "oci",
          list,
          `docker://${job.ref}`,
        ],
      },
    ],
    stop: async () => {
      await probe([...pre, "manifest", "rm", list]);
    },
  };
}

/** Starts a daemon in its own process group, logging to a file; returns its pid. */
function launch(argv: string[], logFile: string): number {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", fd, fd], detached: true });
    child.on("error", () => {});
    child.unref();
    if (child.pid === undefined) throw new Skip(`cannot start ${argv[0]!}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function waitReady(
  what: string,
  pid: number,
  logFile: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  for (let i = 0; i < 60; i++) {
    if (await ready()) return;
    if (!alive(pid)) break;
    await sleep(500);
  }
  await stopGroup(pid, 5000);
  const log = await readFile(logFile, "utf8").catch(() => "");
  throw new Skip(`${what} did not start:\n${lastLines(log)}`);
}

/**
 * Docker 20.10 from Debian: its own dockerd (data-root, exec-root, socket), no bridge so
 * iptables stay untouched. One BuildKit build per platform (20.10 cannot do several at once and
 * has no buildx), then `docker manifest` assembles and pushes the index.
 */
async function startDocker(env: ToolEnv): Promise<Tool> {
  // /usr/local/bin/docker on this kind of machine is a newer client that insists on buildx.
  const docker = "/usr/bin/docker";
  const dockerd = existsSync("/usr/sbin/dockerd") ? "/usr/sbin/dockerd" : "/usr/bin/dockerd";
  if (!existsSync(docker) || !existsSync(dockerd))
    throw new Skip("docker.io (Docker 20.10) is not installed (bash bench/setup installs it)");
  const version = await requireTool([dockerd, "--version"], "dockerd");
  const sock = join(env.dir, "docker.sock");
  const config = join(env.dir, "daemon.json");
  await writeFile(
    config,
    JSON.stringify({
      bridge: "none",
      iptables: false,
      "ip-forward": false,
      "ip-masq": false,
      "insecure-registries": [env.registry],
      features: { buildkit: true },
    }),
  );
  const logFile = join(env.dir, "dockerd.log");
  const pid = launch(
    [
      dockerd,
      "--config-file",
      config,
      "--data-root",
      join(env.dir, "data"),
      "--exec-root",
      join(env.dir, "exec"),
      "--pidfile",
      join(env.dir, "docker.pid"),
      "-H",
      `unix://${sock}`,
    ],
    logFile,
  );
  const cenv = {
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: join(env.dir, "client"),
    DOCKER_BUILDKIT: "1",
  };
  await waitReady(
    "dockerd",
    pid,
    logFile,
    async () => (await probe([docker, "version"], cenv, 10_000)).code === 0,
  );
  const tagOf = (ref: string, platform: string) => `${ref}-${platform.replace(/\//g, "-")}`;
  return {
    name: "docker",
    version,
    reset: async () => {
      await probe([docker, "system", "prune", "-af"], cenv);
      await probe([docker, "builder", "prune", "-af"], cenv);
    },
    beforeBuild: async () => {},
    remoteCache: false,
    build: (job) => {
      const perPlatform = job.platforms.map((p) => tagOf(job.ref, p));
      return [
        ...job.platforms.flatMap((p, i) => [
          {
            argv: [
              docker,
              "build",
              "--platform",
              p,
              "--network",
              "none",
              "--progress",
              "plain",
              "-t",
              perPlatform[i]!,
              job.context,
            ],
            env: cenv,
          },
          { argv: [docker, "push", "-q", perPlatform[i]!], env: cenv },
        ]),
        {
          argv: [docker, "manifest", "create", "--insecure", "--amend", job.ref, ...perPlatform],
          env: cenv,
        },
        { argv: [docker, "manifest", "push", "--insecure", "--purge", job.ref], env: cenv },
      ];
    },
    // dockerd stops the containerd it started on SIGTERM.
    stop: () => stopGroup(pid, 20_000),
  };
}

const BUILDKIT_HINT = "Debian 12 packages no BuildKit; put buildctl and buildkitd on PATH";

/** A standalone BuildKit, when buildctl and buildkitd are on PATH (Debian 12 ships neither). */
async function startBuildctl(env: ToolEnv): Promise<Tool> {
  const version = await requireTool(["buildctl", "--version"], "buildctl", BUILDKIT_HINT);
  await requireTool(["buildkitd", "--version"], "buildkitd", BUILDKIT_HINT);
  const sock = join(env.dir, "buildkitd.sock");
  const config = join(env.dir, "buildkitd.toml");
  await writeFile(config, `[registry."${env.registry}"]\n  http = true\n  insecure = true\n`);
  const logFile = join(env.dir, "buildkitd.log");
  const pid = launch(
    [
      "buildkitd",
      "--config",
      config,
      "--root",
      join(env.dir, "root"),
      "--addr",
      `unix://${sock}`,
      "--oci-worker-binary",
      "runc",
      "--oci-worker-net",
      "host",
      "--containerd-worker",
      "false",
    ],
    logFile,
  );
  const addr = ["--addr", `unix://${sock}`];
  await waitReady(
    "buildkitd",
    pid,
    logFile,
    async () => (await probe(["buildctl", ...addr, "debug", "workers"], {}, 10_000)).code === 0,
  );
  return {
    name: "buildctl",
    version,
    reset: async () => {
      await probe(["buildctl", ...addr, "prune", "--all"]);
    },
    beforeBuild: async () => {},
    remoteCache: true,
    build: (job) => [
      {
        argv: [
          "buildctl",
          ...addr,
          "build",
          "--progress",
          "plain",
          "--frontend",
          "dockerfile.v0",
          "--local",
          `context=${job.context}`,
          "--local",
          `dockerfile=${job.context}`,
          "--opt",
          `platform=${job.platforms.join(",")}`,
          // what `docker buildx build --push` asks for, and kiln does by default
          "--opt",
          "attest:provenance=mode=min",
          "--output",
          `type=image,name=${job.ref},push=true,registry.insecure=true`,
          ...(job.cacheFrom
            ? ["--import-cache", `type=registry,ref=${job.cacheFrom},registry.insecure=true`]
            : []),
          ...(job.cacheTo
            ? ["--export-cache", `type=registry,ref=${job.cacheTo},mode=max,registry.insecure=true`]
            : []),
        ],
      },
    ],
    stop: () => stopGroup(pid, 20_000),
  };
}
