// kiln against its peers: for each workload, cold / no-op / one-file-changed builds of a
// multi-platform image pushed to a loopback registry this script starts, tools interleaved; and,
// for tools with a registry build cache (kiln, buildctl), a cold build importing the cache an
// untimed build exported (mode=max) — what a CI runner that starts empty sees.
//
//   node --import tsx bench/run.ts [--workloads simple,multistage] [--runs 3]
//        [--peers kiln,buildah,podman,docker,buildctl,runs-alone] [--seed 1] [--out bench/results]
//        [--registry HOST:PORT] [--kiln PATH] [--timeout SECONDS] [--smoke]
//
// Writes <out>/<timestamp>.json (every sample) and <out>/<timestamp>.md (the tables), and prints
// the tables. A tool that is missing or cannot start is reported as skipped. Everything the run
// starts (registry, dockerd, buildkitd) is stopped and its state removed at the end.
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as prettier from "prettier";
import { pushBaseImages } from "../test/fixtures/base-images.js";
import { startRegistry, type RunningRegistry } from "../test/fixtures/registry.js";
import { killActive, killStragglers, removeTree, runTimed } from "./proc.js";
import { markdown, SCENARIOS, summarize, type Sample, type Skipped } from "./report.js";
import { Skip, startTool, TOOL_NAMES, type BuildJob, type Tool, type ToolName } from "./tools.js";
import { prepareContext, WORKLOADS, workload, type Workload } from "./workloads.js";

const repoRoot = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");

interface Options {
  workloads: Workload[];
  runs: number;
  tools: ToolName[];
  seed: number;
  out: string;
  registry: string | undefined;
  kiln: string;
  smoke: boolean;
  timeoutMs: number;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      workloads: { type: "string" },
      runs: { type: "string" },
      peers: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      registry: { type: "string" },
      kiln: { type: "string" },
      timeout: { type: "string" },
      smoke: { type: "boolean" },
    },
    strict: true,
  });
  const smoke = values.smoke === true;
  const list = (s: string | undefined) =>
    s
      ?.split(",")
      .map((x) => x.trim())
      .filter(Boolean);
  const tools = list(values.peers) ?? (smoke ? ["kiln"] : [...TOOL_NAMES]);
  for (const t of tools) {
    if (!(TOOL_NAMES as readonly string[]).includes(t))
      throw new Error(`--peers: unknown tool ${t} (known: ${TOOL_NAMES.join(", ")})`);
  }
  const names =
    list(values.workloads) ??
    (smoke ? ["smoke"] : WORKLOADS.map((w) => w.name).filter((n) => n !== "smoke"));
  const int = (flag: string, s: string | undefined, dflt: number) => {
    const n = s === undefined ? dflt : Number(s);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`${flag}: expected a positive integer, got ${s ?? ""}`);
    return n;
  };
  return {
    workloads: names.map(workload),
    runs: int("--runs", values.runs, smoke ? 1 : 3),
    tools: tools as ToolName[],
    seed: int("--seed", values.seed, 1),
    out: values.out ?? join(repoRoot, "bench", "results"),
    registry: values.registry,
    kiln: resolve(values.kiln ?? join(repoRoot, "bin", "kiln")),
    smoke,
    timeoutMs: int("--timeout", values.timeout, 1800) * 1000,
  };
}

/** Results sit in the repo (git-ignored), so they are written as the repo's prettier check wants. */
async function writeFormatted(file: string, text: string): Promise<void> {
  const config = (await prettier.resolveConfig(file)) ?? {};
  await writeFile(file, await prettier.format(text, { ...config, filepath: file }));
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

async function machine(): Promise<Record<string, string | number>> {
  const debian = await readFile("/etc/debian_version", "utf8").catch(() => "?");
  return {
    cpu: cpus()[0]?.model ?? "?",
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    debian: debian.trim(),
    node: process.version,
  };
}

async function main(): Promise<number> {
  const opts = options();
  const started = new Date();
  const stamp = started.toISOString().slice(0, 19).replace(/:/g, "-");
  const work = await mkdtemp(join(tmpdir(), "kiln-bench-"));
  const logs = join(opts.out, `${stamp}-logs`);
  await mkdir(logs, { recursive: true });

  const tools: Tool[] = [];
  let registry: RunningRegistry | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      killActive();
      for (const t of [...tools].reverse())
        await t.stop().catch((e: unknown) => {
          log(`stopping ${t.name}: ${String(e)}`);
        });
      await registry?.stop();
      const left = await killStragglers(work);
      if (left.length) log(`killed leftover processes ${left.join(", ")}`);
      await removeTree(work);
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const samples: Sample[] = [];
  const skipped: Skipped[] = [];
  const versions: Record<string, string> = {};
  const results = async () => {
    const summaries = summarize(samples);
    const table = markdown(summaries, opts.tools, skipped, opts.workloads);
    const json = {
      date: started.toISOString(),
      machine: await machine(),
      options: { ...opts, workloads: opts.workloads.map((w) => w.name) },
      versions,
      skipped,
      summaries,
      samples,
    };
    await writeFormatted(join(opts.out, `${stamp}.json`), JSON.stringify(json));
    await writeFormatted(join(opts.out, `${stamp}.md`), table);
    return table;
  };

  try {
    let host = opts.registry;
    if (host === undefined) {
      registry = await startRegistry({ dir: join(work, "registry") });
      host = registry.host;
      log(`registry ${host}; pushing base images`);
      await pushBaseImages(host);
    }
    const base = `${host}/base/busybox:latest`;

    for (const name of opts.tools) {
      try {
        const t = await startTool(name, { kiln: opts.kiln, dir: join(work, name), registry: host });
        tools.push(t);
        versions[name] = t.version;
        log(`${name}: ${t.version}`);
      } catch (e) {
        const reason = e instanceof Skip ? e.message : `failed to start: ${String(e)}`;
        skipped.push({ tool: name, reason });
        log(`${name}: skipped: ${reason}`);
      }
    }

    for (const w of opts.workloads) {
      const ctx = await prepareContext(w, opts.seed, base, join(repoRoot, ".cache", "bench"));
      for (let run = 1; run <= opts.runs; run++) {
        // Each tool pushes to its own repository, new each run, so "cold" also uploads every blob.
        const ref = (t: Tool) => `${host}/bench/${w.name}-${t.name}-r${run}:latest`;
        const failed = new Set<string>();
        for (const scenario of SCENARIOS) {
          if (scenario === "changed") await ctx.change(run);
          for (const t of tools) {
            if (failed.has(t.name) || (t.coldOnly && scenario !== "cold")) continue;
            let job: BuildJob = { context: ctx.dir, platforms: w.platforms, ref: ref(t) };
            if (scenario === "imported") {
              if (!t.remoteCache) continue;
              const cache = `${ref(t).replace(/:latest$/, "")}-cache:max`;
              // untimed: export the cache from the warm state, then start empty
              const exported = await runTimed(
                t.build({ ...job, cacheTo: cache }),
                join(logs, `${w.name}-${t.name}-export-r${run}.log`),
                opts.timeoutMs,
              );
              if (!exported.ok) {
                log(`${w.name} run ${run} cache export ${t.name} FAILED: ${exported.error ?? ""}`);
                continue;
              }
              await t.reset();
              job = { ...job, cacheFrom: cache };
            }
            if (scenario === "cold") await t.reset();
            try {
              await t.beforeBuild(job);
            } catch (e) {
              // a peer that cannot prepare this workload leaves the others measured
              log(
                e instanceof Skip
                  ? `${w.name} ${t.name}: skipped: ${e.message}`
                  : `${w.name} run ${run} ${scenario} ${t.name} FAILED to prepare: ${String(e)}`,
              );
              failed.add(t.name);
              continue;
            }
            const r = await runTimed(
              t.build(job),
              join(logs, `${w.name}-${t.name}-${scenario}-r${run}.log`),
              opts.timeoutMs,
            );
            samples.push({ workload: w.name, scenario, tool: t.name, run, ...r });
            log(
              `${w.name} run ${run} ${scenario.padEnd(7)} ${t.name.padEnd(8)} ${r.seconds.toFixed(2)}s` +
                (r.ok ? "" : ` FAILED: ${r.error ?? ""}`),
            );
            // What follows a failed build would measure something else; try again next run.
            if (!r.ok) failed.add(t.name);
          }
        }
        await ctx.change(0);
      }
      await results();
    }
    const table = await results();
    process.stdout.write(table);
    log(`results in ${join(opts.out, stamp)}.{json,md}, logs in ${logs}`);
    if (opts.smoke) {
      const kiln = samples.filter((s) => s.tool === "kiln");
      // every scenario, the imported-cache one included (kiln has a remote cache)
      if (kiln.length !== SCENARIOS.length || !kiln.every((s) => s.ok)) return 1;
    }
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench: error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
