/** Text pieces shared by the plain, tty and quiet renderers. */
import { isCanceled, type BuildState, type LogLine } from "./state.js";
import type { SummaryEvent, WarningEvent } from "./events.js";

/** Seconds with one decimal, as BuildKit prints durations: "3.2s". */
export function formatSeconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** Decimal SI sizes with two decimals ("1.20MB"), plain bytes below 1 kB ("512B"). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n}B` : `${v.toFixed(2)}${units[i]}`;
}

/** "1.20MB / 3.40MB", or just the current size when the total is unknown, or "" for nothing yet. */
export function formatTransfer(current: number, total: number | undefined): string {
  if (total !== undefined && total > 0) return `${formatBytes(current)} / ${formatBytes(total)}`;
  return current > 0 ? formatBytes(current) : "";
}

/** A log line's offset: more decimals while they still matter (BuildKit's precision rule). */
export function formatLogLine(l: LogLine): string {
  const digits = l.seconds < 10 ? 3 : l.seconds < 100 ? 2 : 1;
  return `${l.seconds.toFixed(digits)} ${l.text}`;
}

function warningText(w: WarningEvent): string {
  return w.location ? `${w.message} (${w.location.file}:${w.location.line})` : w.message;
}

/** The one-line form used inside a vertex's output: "WARN: message (Dockerfile:3)". */
export function warningLine(w: WarningEvent): string {
  return `WARN: ${warningText(w)}`;
}

/** The end-of-build list of warnings, or nothing when there were none. */
export function warningsBlock(warnings: readonly WarningEvent[]): string[] {
  if (warnings.length === 0) return [];
  const n = warnings.length;
  const out = [`${n} warning${n === 1 ? "" : "s"} found:`];
  for (const w of warnings) {
    out.push(` - ${warningText(w)}`);
    for (const d of w.detail?.split("\n") ?? []) out.push(`   ${d}`);
  }
  return out;
}

/**
 * The end-of-build table, one row per platform:
 *   linux/arm64  9.8s  (9.1s emulated)  3/7 cached  sha256:…
 */
export function summaryBlock(s: SummaryEvent): string[] {
  const n = s.platforms.length;
  const rows = s.platforms.map((p) => [
    p.platform,
    formatSeconds(p.durationMs),
    p.emulatedMs > 0 ? `(${formatSeconds(p.emulatedMs)} emulated)` : "",
    `${p.cached}/${p.total} cached`,
    p.digest ?? "",
  ]);
  const widths = rows.reduce<number[]>(
    (w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)),
    [],
  );
  const lines = rows.map((row) =>
    ` ${row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")}`.trimEnd(),
  );
  return [`Built ${n} platform${n === 1 ? "" : "s"} in ${formatSeconds(s.durationMs)}:`, ...lines];
}

/** For each failed vertex, its last log lines, framed as BuildKit frames them. */
export function errorBlocks(state: BuildState): string[] {
  const out: string[] = [];
  for (const v of state.vertices.values()) {
    if (v.vertex.error === undefined || isCanceled(v.vertex)) continue;
    out.push("------", ` > ${v.vertex.name}:`, ...v.lines.map(formatLogLine), "------");
  }
  return out;
}
