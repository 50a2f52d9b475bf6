/** `kiln history`: the build records in the state dir, after `docker buildx history`. */
import { createWriteStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { Command, Option } from "commander";
import { KilnError, messageOf } from "../errors.js";
import { defaultRoot } from "../engine/state.js";
import {
  HistoryStore,
  countSteps,
  criticalPath,
  failedStep,
  foldSteps,
  formatDuration,
  keepFromEnv,
  timelineHtml,
  traceOf,
  type BuildRecord,
  type Step,
} from "../history/index.js";
import { importBundle, writeBundle } from "../history/bundle.js";
import { createRenderer, parseProgressMode, type ProgressEvent } from "../progress/index.js";
import { ago, parseDuration, table } from "./du.js";

function store(): HistoryStore {
  return HistoryStore.at(defaultRoot());
}

const REF_HELP = "a build ref, or ^N for the N-th most recent (default ^0, the last build)";

/** ls's counts: the ones written when the build ended, else worked out from its events. */
async function stepsOf(s: HistoryStore, r: BuildRecord): Promise<Step[]> {
  return foldSteps(await s.allEvents(r.ref).catch(() => []));
}

function durationOf(r: BuildRecord): number | undefined {
  return r.completedAt === undefined ? undefined : r.completedAt - r.createdAt;
}

function lsLine(r: BuildRecord, counts: { total: number; completed: number; cached: number }) {
  const d = durationOf(r);
  return {
    ref: r.ref,
    name: r.name,
    status: r.status,
    platforms: r.result?.platforms.map((p) => p.platform) ?? r.request.platforms,
    created_at: new Date(r.createdAt).toISOString(),
    ...(r.completedAt === undefined ? {} : { completed_at: new Date(r.completedAt).toISOString() }),
    ...(d === undefined ? {} : { duration_ms: d }),
    total_steps: counts.total,
    completed_steps: counts.completed,
    cached_steps: counts.cached,
    ...(r.builder === undefined ? {} : { builder: r.builder }),
    ...(r.node === undefined ? {} : { node: r.node }),
  };
}

const STATUS_TEXT: Record<BuildRecord["status"], string> = {
  running: "Running",
  completed: "Completed",
  error: "Error",
  canceled: "Canceled",
};

async function ls(flags: { format: string }): Promise<void> {
  const s = store();
  const records = await s.list();
  if (flags.format === "json") {
    const lines: string[] = [];
    for (const r of records) {
      const counts = r.steps ?? countSteps(await stepsOf(s, r));
      lines.push(JSON.stringify(lsLine(r, counts)));
    }
    process.stdout.write(lines.map((l) => `${l}\n`).join(""));
    return;
  }
  const now = Date.now();
  const rows = [["BUILD ID", "NAME", "STATUS", "CREATED AT", "DURATION", "PLATFORMS"]];
  for (const r of records) {
    const d = durationOf(r);
    rows.push([
      r.ref,
      r.name.length > 36 ? `…${r.name.slice(-35)}` : r.name,
      STATUS_TEXT[r.status],
      ago(new Date(r.createdAt), now),
      d === undefined ? `${formatDuration(now - r.createdAt)}+` : formatDuration(d),
      (r.result?.platforms.map((p) => p.platform) ?? r.request.platforms).join(",") || "host",
    ]);
  }
  process.stdout.write(`${table(rows)}\n`);
}

/** inspect's document: buildx's field names where it has them, and the steps. */
function inspectDoc(r: BuildRecord, steps: Step[]): Record<string, unknown> {
  const counts = r.steps ?? countSteps(steps);
  const failed = failedStep(steps);
  const end = r.completedAt ?? Date.now();
  return {
    Name: r.name,
    Ref: r.ref,
    Context: r.request.context,
    Dockerfile: r.request.dockerfile,
    ...(r.request.target ? { Target: r.request.target } : {}),
    Platform: r.request.platforms,
    ...(Object.keys(r.request.namedContexts).length
      ? { NamedContexts: keyValues(r.request.namedContexts) }
      : {}),
    StartedAt: new Date(r.createdAt).toISOString(),
    ...(r.completedAt === undefined ? {} : { CompletedAt: new Date(r.completedAt).toISOString() }),
    // nanoseconds, as buildx's time.Duration
    Duration: (end - r.createdAt) * 1e6,
    Status: r.status,
    ...(r.error || failed
      ? {
          Error: {
            Code: r.error?.code,
            Message: r.error?.message ?? failed?.error,
            ...(r.error?.hint ? { Hint: r.error.hint } : {}),
            ...(failed
              ? {
                  Name: failed.name,
                  ...(failed.platform ? { Platform: failed.platform } : {}),
                  ...(failed.node ? { Node: failed.node } : {}),
                  ...(failed.command !== undefined ? { Command: failed.command } : {}),
                  ...(failed.exitCode !== undefined ? { ExitCode: failed.exitCode } : {}),
                  Logs: failed.logTail,
                }
              : {}),
          },
        }
      : {}),
    NumCompletedSteps: counts.completed,
    NumTotalSteps: counts.total,
    NumCachedSteps: counts.cached,
    BuildArgs: keyValues(r.request.buildArgs),
    Labels: keyValues(r.request.labels),
    Config: {
      Network: r.request.network,
      ...(r.request.extraHosts.length ? { ExtraHosts: r.request.extraHosts } : {}),
      ...(r.request.platforms.length > 1 ? { MultiPlatform: true } : {}),
      ...(r.request.noCache ? { NoCache: true } : {}),
      ...(r.request.noCacheFilter.length ? { NoCacheFilter: r.request.noCacheFilter } : {}),
    },
    Secrets: r.request.secrets,
    SSH: r.request.ssh,
    ...(r.request.allow?.length ? { Entitlements: r.request.allow } : {}),
    ...(r.request.cacheFrom?.length ? { CacheFrom: r.request.cacheFrom } : {}),
    ...(r.request.cacheTo?.length ? { CacheTo: r.request.cacheTo } : {}),
    Tags: r.request.tags,
    Outputs: r.request.outputs,
    ...(r.result
      ? {
          Result: {
            Digest: r.result.digest,
            ImageNames: r.result.imageNames,
            Platforms: r.result.platforms.map((p) => ({
              Platform: p.platform,
              Digest: p.manifestDigest,
              ConfigDigest: p.configDigest,
              Nodes: nodesOf(steps, p.platform),
            })),
          },
        }
      : {}),
    ...(r.builder ? { Builder: r.builder } : {}),
    ...(r.node ? { Node: r.node } : {}),
    Host: r.host,
    Steps: steps.map((s) => ({
      Name: s.name,
      ...(s.platform ? { Platform: s.platform } : {}),
      ...(s.node ? { Node: s.node } : {}),
      ...(s.started === undefined ? {} : { StartedAt: new Date(s.started).toISOString() }),
      ...(s.completed === undefined ? {} : { CompletedAt: new Date(s.completed).toISOString() }),
      Mode: s.mode,
      ...(s.error === undefined ? {} : { Error: s.error }),
      ...(s.exitCode === undefined ? {} : { ExitCode: s.exitCode }),
    })),
    CriticalPath: criticalPath(steps, end).map((id) => steps.find((s) => s.id === id)!.name),
    ...(r.dockerfile.content === undefined ? {} : { DockerfileContent: r.dockerfile.content }),
  };
}

function keyValues(m: Record<string, string>): { Name: string; Value: string }[] {
  return Object.entries(m).map(([Name, Value]) => ({ Name, Value }));
}

/** The nodes whose steps built `platform` (several when a lost node's platforms moved). */
function nodesOf(steps: Step[], platform: string): string[] {
  return [...new Set(steps.filter((s) => s.platform === platform && s.node).map((s) => s.node!))];
}

function pretty(r: BuildRecord, steps: Step[]): string {
  const out: string[] = [];
  const field = (k: string, v: string | undefined): void => {
    if (v !== undefined && v !== "") out.push(`${`${k}:`.padEnd(16)}${v}`);
  };
  field("Name", r.name);
  field("Ref", r.ref);
  field("Context", r.request.context);
  field("Dockerfile", r.request.dockerfile);
  field("Target", r.request.target);
  field("Platforms", r.request.platforms.join(", ") || "host platform");
  field("Builder", r.builder);
  field("Node", r.node);
  out.push("");
  field("Started", new Date(r.createdAt).toISOString().replace("T", " ").slice(0, 19));
  const end = r.completedAt ?? Date.now();
  field("Duration", `${formatDuration(end - r.createdAt)}${r.completedAt ? "" : " (running)"}`);
  field("Status", STATUS_TEXT[r.status]);
  if (r.error) field("Error", `${r.error.code} ${r.error.message}`);
  const c = r.steps ?? countSteps(steps);
  field(
    "Build Steps",
    `${c.completed}/${c.total} (${c.total ? Math.round((c.cached / c.total) * 100) : 0}% cached)`,
  );
  out.push("");
  const args = Object.entries(r.request.buildArgs);
  if (args.length) {
    out.push("BUILD ARG   VALUE", ...args.map(([k, v]) => `${k.padEnd(11)} ${v}`), "");
  }
  if (r.request.secrets.length)
    field("Secrets", `${r.request.secrets.join(", ")} (values not recorded)`);
  if (r.result) {
    field("Digest", r.result.digest);
    field("Image Names", r.result.imageNames.join(", "));
    out.push(
      "",
      "PLATFORM          MANIFEST                                                                  NODE",
    );
    for (const p of r.result.platforms) {
      out.push(
        `${p.platform.padEnd(17)} ${p.manifestDigest.padEnd(73)} ${nodesOf(steps, p.platform).join(",")}`,
      );
    }
    out.push("");
  }
  const failed = failedStep(steps);
  if (failed) {
    field("Failed Step", failed.name);
    field("Platform", [failed.platform, failed.node].filter(Boolean).join(" on node "));
    field("Command", failed.command);
    field("Exit Code", failed.exitCode?.toString());
    field("Step Error", failed.error);
    if (failed.logTail.length) {
      out.push("Logs:", `> => ${failed.name}:`, ...failed.logTail.map((l) => `> ${l}`));
    }
    out.push("");
  }
  out.push(`Print build logs: kiln history logs ${r.ref}`);
  out.push(`See the timeline: kiln history timeline ${r.ref} -o build.html`);
  return `${out.join("\n")}\n`;
}

async function inspect(ref: string | undefined, flags: { format: string }): Promise<void> {
  const s = store();
  const r = await s.resolve(ref);
  const steps = await stepsOf(s, r);
  if (flags.format === "json") {
    process.stdout.write(`${JSON.stringify(inspectDoc(r, steps), null, 2)}\n`);
  } else process.stdout.write(pretty(r, steps));
}

async function logs(ref: string | undefined, flags: { progress: string }): Promise<void> {
  const mode = parseProgressMode(flags.progress);
  if (mode === "auto" || mode === "quiet") {
    throw new KilnError("E_FLAG", `history logs cannot replay as ${mode}`, {
      hint: "use --progress plain, rawjson or tty",
    });
  }
  const s = store();
  const r = await s.resolve(ref);
  // a reader that stops early (… | head) ends the replay, not with an error
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
  });
  // the renderer's clock is the recorded time, so durations read as they did live
  let at = r.createdAt;
  const renderer = createRenderer(mode, process.stdout, { timers: false, clock: () => at });
  for await (const ev of s.events(r.ref)) {
    at = Math.max(at, eventTime(ev) ?? at);
    renderer.write(ev);
  }
  await renderer.close();
}

function eventTime(ev: ProgressEvent): number | undefined {
  switch (ev.type) {
    case "vertex":
    case "status":
      return ev.completed ?? ev.started;
    case "log":
      return ev.timestamp;
    default:
      return undefined;
  }
}

/** Writes `text` to `file`, or to stdout when it is absent or `-`. */
async function emit(text: string, file: string | undefined): Promise<void> {
  if (file === undefined || file === "-") {
    process.stdout.write(text);
    return;
  }
  try {
    await writeFile(file, text);
  } catch (e) {
    throw new KilnError("E_OUTPUT", `cannot write ${file}: ${messageOf(e)}`);
  }
}

type Render = (r: BuildRecord, steps: Step[]) => string;

function parseKeep(v: string): number {
  if (!/^\d+$/.test(v)) {
    throw new KilnError("E_FLAG", `invalid --keep value ${JSON.stringify(v)}`, {
      hint: "give the number of build records to keep",
    });
  }
  return Number(v);
}

export function historyCommand(): Command {
  const cmd = new Command("history").description(
    "Work with build records: every build is recorded in kiln's state dir (the last 50, KILN_HISTORY_KEEP)",
  );
  cmd
    .command("ls")
    .description("List build records, newest first")
    .addOption(
      new Option("--format <format>", "table, or json (one object per line)")
        .choices(["table", "json"])
        .default("table"),
    )
    .action(ls);
  cmd
    .command("inspect")
    .description("Show a build record: request, outcome, failed step with its exit code and log")
    .argument("[ref]", REF_HELP)
    .addOption(
      new Option("--format <format>", "pretty, or json")
        .choices(["pretty", "json"])
        .default("pretty"),
    )
    .action(inspect);
  cmd
    .command("logs")
    .description("Print a build's progress again, as --progress plain showed it")
    .argument("[ref]", REF_HELP)
    .option("--progress <mode>", "plain, rawjson or tty", "plain")
    .action(logs);
  cmd
    .command("rm")
    .description("Remove build records")
    .argument("[ref...]", "build refs or ^N")
    .option("--all", "remove every finished build record")
    .action(async (refs: string[], flags: { all?: boolean }) => {
      const s = store();
      if (flags.all) {
        for (const ref of await s.prune({ all: true })) process.stdout.write(`${ref}\n`);
        return;
      }
      if (refs.length === 0) {
        throw new KilnError("E_FLAG", "history rm needs a build ref", {
          hint: "give refs from `kiln history ls` (or ^N), or --all",
        });
      }
      const records = [];
      for (const ref of refs) records.push(await s.resolve(ref));
      for (const r of records) {
        await s.remove(r.ref);
        process.stdout.write(`${r.ref}\n`);
      }
    });
  cmd
    .command("prune")
    .description("Remove old build records (running builds keep theirs)")
    .option("--keep <n>", "keep the newest n records (default: KILN_HISTORY_KEEP or 50)")
    .option(
      "--filter <filter>",
      "until=<duration>: also remove records older than that, e.g. until=24h",
    )
    .action(async (flags: { keep?: string; filter?: string }) => {
      let olderThanMs: number | undefined;
      if (flags.filter !== undefined) {
        const m = /^until=(.*)$/.exec(flags.filter);
        if (!m) {
          throw new KilnError("E_FLAG", `unsupported filter ${JSON.stringify(flags.filter)}`, {
            hint: "the supported filter is until=<duration>, e.g. --filter until=24h",
          });
        }
        olderThanMs = parseDuration(m[1]!);
      }
      const keep = flags.keep === undefined ? keepFromEnv() : parseKeep(flags.keep);
      for (const ref of await store().prune({ keep, olderThanMs })) {
        process.stdout.write(`${ref}\n`);
      }
    });
  cmd
    .command("export")
    .description("Write one build record (request, Dockerfile, events) to a file to share")
    .argument("[ref]", REF_HELP)
    .option("-o, --output <file>", "the file to write (- or absent: stdout)")
    .action(async (ref: string | undefined, flags: { output?: string }) => {
      const s = store();
      const r = await s.resolve(ref);
      if ((flags.output === undefined || flags.output === "-") && process.stdout.isTTY) {
        throw new KilnError("E_FLAG", "refusing to write a build record to the terminal", {
          hint: "give -o FILE or redirect stdout",
        });
      }
      const out =
        flags.output === undefined || flags.output === "-"
          ? process.stdout
          : createWriteStream(flags.output);
      await writeBundle(s, r, out);
      if (out !== process.stdout) {
        out.end();
        await once(out, "close");
      }
    });
  cmd
    .command("import")
    .description("Add a build record written by `kiln history export`")
    .argument("<file>", "the exported file (- for stdin)")
    .action(async (file: string) => {
      const text =
        file === "-"
          ? await readStdin()
          : await readFile(file, "utf8").catch((e: unknown) => {
              throw new KilnError("E_HISTORY_IMPORT", `cannot read ${file}: ${messageOf(e)}`);
            });
      const r = await importBundle(store(), text, file);
      process.stdout.write(`${r.ref}\n`);
    });
  const picture = (name: string, description: string, file: string, render: Render): void => {
    cmd
      .command(name)
      .description(description)
      .argument("[ref]", REF_HELP)
      .option("-o, --output <file>", `the ${file} file to write (- or absent: stdout)`)
      .action(async (ref: string | undefined, flags: { output?: string }) => {
        const s = store();
        const r = await s.resolve(ref);
        await emit(render(r, await stepsOf(s, r)), flags.output);
      });
  };
  picture(
    "trace",
    "Write a build's steps as Chrome trace events (open in Perfetto or chrome://tracing)",
    "JSON",
    (r, steps) => `${JSON.stringify(traceOf(r, steps))}\n`,
  );
  picture(
    "timeline",
    "Write a build's timeline as one self-contained HTML page: a lane per platform, the critical path",
    "HTML",
    timelineHtml,
  );
  return cmd;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
