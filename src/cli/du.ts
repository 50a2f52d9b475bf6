/** `kiln du` and `kiln prune`: disk usage of the state dir and removing build cache (buildx-like). */
import { createInterface } from "node:readline";
import { Command } from "commander";
import { KilnError } from "../errors.js";
import { diskUsage, diskUsageReport, prune, type UsageRecord } from "../engine/gc.js";
import { openState } from "../engine/state.js";
import { HistoryStore, keepFromEnv } from "../history/index.js";

/** Sizes as docker prints them: decimal units, four significant digits ("1.234MB"). */
export function humanSize(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${Number(v.toPrecision(4))}${units[u]}`;
}

/** "10GB", "512m", "1.5GiB", "1048576": binary multiples, as docker's --keep-storage. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(text.trim());
  if (!m) {
    throw new KilnError("E_FLAG", `invalid size ${JSON.stringify(text)}`, {
      hint: "give a size like 10GB, 512MB or a number of bytes",
    });
  }
  const power = " kmgtp".indexOf((m[2] ?? "").toLowerCase() || " ");
  return Math.floor(Number(m[1]) * 1024 ** power);
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go duration ("24h", "1h30m", "90s") in milliseconds. */
export function parseDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let ms = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  if (text === "" || end !== text.length) {
    throw new KilnError("E_FLAG", `invalid duration ${JSON.stringify(text)}`, {
      hint: "give a duration like 24h, 1h30m or 90s",
    });
  }
  return ms;
}

/** "3 minutes ago", as docker prints times. */
export function ago(d: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  const steps: [number, string][] = [
    [86_400 * 365, "year"],
    [86_400 * 7, "week"],
    [86_400, "day"],
    [3600, "hour"],
    [60, "minute"],
    [1, "second"],
  ];
  for (const [size, name] of steps) {
    const n = Math.floor(s / size);
    if (n >= 1) return `${n} ${name}${n > 1 ? "s" : ""} ago`;
  }
  return "just now";
}

/** Columns padded to their widest cell, two spaces apart (the first row is the header). */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  "),
    )
    .join("\n");
}

function shortId(id: string): string {
  return id.length > 40 ? `${id.slice(0, 39)}…` : id;
}

/** du's table (with the in-use and reclaimable columns), or prune's list of what went. */
function recordRows(records: UsageRecord[], usage: boolean): string[][] {
  const head = ["ID", "TYPE", ...(usage ? ["IN USE", "RECLAIMABLE"] : []), "SIZE", "LAST USED"];
  return [
    head,
    ...records.map((r) => [
      shortId(r.id),
      r.type,
      ...(usage ? [String(r.inUse), String(r.reclaimable)] : []),
      humanSize(r.size),
      ago(r.lastUsed),
    ]),
  ];
}

function verboseRecord(r: UsageRecord): string {
  const lines: [string, string][] = [
    ["ID", r.id],
    ["Type", r.type],
    ["Description", r.description],
  ];
  if (r.parents.length > 0) lines.push(["Parents", r.parents.join("\n             ")]);
  if (r.createdAt) lines.push(["Created at", r.createdAt.toISOString()]);
  lines.push(
    ["Last used", `${ago(r.lastUsed)} (${r.lastUsed.toISOString()})`],
    ["Size", `${humanSize(r.size)} (${r.size} bytes)`],
    ["Shared", String(r.shared)],
    ["In use", String(r.inUse)],
    ["Reclaimable", String(r.reclaimable)],
  );
  return lines.map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`).join("\n");
}

export function duCommand(): Command {
  return new Command("du")
    .description("Show the disk usage of kiln's state dir (build cache, layers, blobs)")
    .option("--verbose", "every field of every record")
    .option("--json", "print JSON")
    .action(async (flags: { verbose?: boolean; json?: boolean }) => {
      const report = await diskUsageReport(await openState());
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const out: string[] = [];
      if (flags.verbose) out.push(...report.records.map((r) => `${verboseRecord(r)}\n`));
      else if (report.records.length > 0) out.push(`${table(recordRows(report.records, true))}\n`);
      out.push(
        table([
          ["Shared:", humanSize(report.shared)],
          ["Private:", humanSize(report.total - report.shared)],
          [
            "Reclaimable:",
            `${humanSize(report.reclaimable)} (${humanSize(report.reclaimableAll)} with --all)`,
          ],
          ["Total:", `${humanSize(report.total)} (${report.total} bytes)`],
        ]),
      );
      process.stdout.write(`${out.join("\n")}\n`);
    });
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string | undefined>((resolve) => {
      rl.once("close", () => {
        resolve(undefined);
      });
      rl.question(question, resolve);
    });
    // stdin ended without an answer: end the prompt's line
    if (answer === undefined) process.stderr.write("\n");
    return /^y(es)?$/i.test(answer?.trim() ?? "");
  } finally {
    rl.close();
  }
}

export function pruneCommand(): Command {
  return new Command("prune")
    .description(
      "Remove build cache: by default what no named image uses; --all everything but named images' own content",
    )
    .option(
      "-a, --all",
      "also remove what named images use (their blobs stay) and cache mounts; without --filter or --keep-storage, build-context checksums too",
    )
    .option(
      "--filter <filter>",
      "keep records by a filter; until=<duration> keeps those used within it (e.g. until=24h)",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option(
      "--keep-storage <size>",
      "keep the most recently used records while the state dir stays within this size",
    )
    .option("-f, --force", "do not ask for confirmation")
    .action(
      async (flags: { all?: boolean; filter: string[]; keepStorage?: string; force?: boolean }) => {
        let keepDurationMs: number | undefined;
        for (const f of flags.filter) {
          const m = /^until=(.*)$/.exec(f);
          if (!m) {
            throw new KilnError("E_FLAG", `unsupported prune filter ${JSON.stringify(f)}`, {
              hint: "the supported filter is until=<duration>, e.g. --filter until=24h",
            });
          }
          keepDurationMs = parseDuration(m[1]!);
        }
        const keepBytes =
          flags.keepStorage === undefined ? undefined : parseSize(flags.keepStorage);
        if (!flags.force) {
          const what = flags.all ? "all build cache" : "all dangling build cache";
          const ok = await confirm(
            `WARNING! This will remove ${what}. Are you sure you want to continue? [y/N] `,
          );
          if (!ok) return;
        }
        const state = await openState();
        const result = await prune(state, {
          all: flags.all,
          keepDurationMs,
          keepBytes,
          onWait: (n) =>
            process.stderr.write(`waiting for ${n} running build${n > 1 ? "s" : ""} to finish\n`),
        });
        // build records are not cache: they follow the history retention and the until
        // filter (`kiln history rm --all` removes them all)
        const history = HistoryStore.at(state.root);
        const historyBefore = await diskUsage(history.dir);
        const records = await history.prune({ keep: keepFromEnv(), olderThanMs: keepDurationMs });
        const freed = result.freed + historyBefore - (await diskUsage(history.dir));
        if (result.removed.length > 0) {
          process.stdout.write(`${table(recordRows(result.removed, false))}\n`);
        }
        if (records.length > 0) process.stdout.write(`Build records removed: ${records.length}\n`);
        process.stdout.write(`Total: ${humanSize(freed)} (${freed} bytes)\n`);
      },
    );
}
