/**
 * A build record as one self-contained HTML page (no scripts, no network): an SVG timeline
 * with a lane per platform (per node and platform when distributed), a bar per step shaded
 * by how it ran (cached, native, emulated; failed in red), the critical path outlined, and
 * hover text (SVG <title>) with the step, its command and its times. Laid out for 1280 px.
 */
import { BUILD_LANE, layoutSteps, type Layout, type PlacedStep } from "./lanes.js";
import type { BuildRecord } from "./record.js";
import { countSteps, criticalPath, failedStep, type Step } from "./steps.js";

const WIDTH = 1240;
const GUTTER = 236;
const RIGHT = 16;
const PLOT = WIDTH - GUTTER - RIGHT;
const AXIS = 28;
const ROW = 24;
const BAR = 18;
const LANE_PAD = 4;
const LANE_GAP = 10;
const MIN_BAR_PX = 3;
/** Rough width of one character of the 11 px bar labels, to decide what fits. */
const CHAR_PX = 6.2;

const COLORS = {
  native: "#2f6fdb",
  emulated: "#e8920c",
  cached: "#b9c3cf",
  error: "#d83a3a",
  canceled: "#8c96a3",
  critical: "#111827",
};

export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

/** "850ms", "3.2s", "2m 05s" */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

/** The instruction part of a step name: "[linux/arm64 build 2/3] RUN make" → "RUN make". */
function shortName(name: string): string {
  const m = /^(?:\[[^\]]*\]\s*)+(.*)$/.exec(name);
  return m?.[1] || name;
}

function niceTick(span: number): number {
  const raw = span / 8;
  const pow = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

/** Axis labels in one unit: "0s 2s 4s", "0ms 200ms 400ms", "0s 1.5s". */
function tickLabel(t: number, tick: number): string {
  if (tick < 1000) return `${Math.round(t)}ms`;
  return `${Number((t / 1000).toFixed(tick % 1000 ? 1 : 0))}s`;
}

function fillOf(s: Step): string {
  if (s.error !== undefined) return s.canceled ? COLORS.canceled : COLORS.error;
  return COLORS[s.mode];
}

function modeText(s: Step): string {
  if (s.error !== undefined) return s.canceled ? "canceled" : "failed";
  return s.mode === "cached" ? "cached" : s.mode === "emulated" ? "emulated (QEMU)" : "native";
}

function hoverText(p: PlacedStep, origin: number): string {
  const s = p.step;
  const lines = [s.name];
  const where = [s.platform, s.node && `node ${s.node}`].filter(Boolean).join(" · ");
  if (where) lines.push(where);
  lines.push(
    `${modeText(s)}: +${formatDuration(p.start)} → +${formatDuration(p.end)} (${formatDuration(p.end - p.start)})`,
    `started ${new Date(origin + p.start).toISOString()}`,
  );
  if (s.command !== undefined) lines.push(`command: ${s.command}`);
  if (s.exitCode !== undefined) lines.push(`exit code: ${s.exitCode}`);
  if (s.error !== undefined) lines.push(`error: ${s.error}`);
  return lines.join("\n");
}

function laneSummary(steps: readonly PlacedStep[]): string {
  const cached = steps.filter((p) => p.step.mode === "cached").length;
  const emulatedMs = steps
    .filter((p) => p.step.mode === "emulated")
    .reduce((t, p) => t + p.end - p.start, 0);
  const parts = [`${steps.length} step${steps.length === 1 ? "" : "s"}`];
  if (cached) parts.push(`${cached} cached`);
  if (emulatedMs) parts.push(`${formatDuration(emulatedMs)} emulated`);
  return parts.join(" · ");
}

function barOf(
  p: PlacedStep,
  x: (ms: number) => number,
  y: number,
  origin: number,
  onPath: boolean,
): string[] {
  const s = p.step;
  const bx = x(p.start);
  const bw = Math.max(MIN_BAR_PX, x(p.end) - bx);
  const by = y + LANE_PAD + p.row * ROW + (ROW - BAR) / 2;
  const label = shortName(s.name);
  const fits = Math.floor((bw - 8) / CHAR_PX);
  const text =
    fits >= 5 ? (label.length <= fits ? label : `${label.slice(0, fits - 1)}…`) : undefined;
  const state = s.error === undefined ? "" : s.canceled ? " canceled" : " failed";
  const dark = s.mode !== "cached" || s.error !== undefined;
  const rect = (cls: string, fill: string, extra: string): string =>
    `<rect${cls} x="${bx.toFixed(1)}" y="${by}" width="${bw.toFixed(1)}" height="${BAR}" rx="3" fill="${fill}"${extra}/>`;
  return [
    `<g class="step${onPath ? " critical" : ""}">`,
    `<title>${escapeXml(hoverText(p, origin))}</title>`,
    rect(
      ` class="bar ${s.mode}${state}" data-platform="${escapeXml(s.platform ?? "")}" data-node="${escapeXml(s.node ?? "")}" data-step="${escapeXml(s.id)}"`,
      fillOf(s),
      onPath ? ` stroke="${COLORS.critical}" stroke-width="2"` : "",
    ),
    ...(s.mode === "emulated"
      ? [rect("", "url(#emulated-stripes)", ' pointer-events="none"')]
      : []),
    ...(text === undefined
      ? []
      : [
          `<text x="${(bx + 5).toFixed(1)}" y="${by + BAR / 2 + 4}" font-size="11.5" fill="${dark ? "#ffffff" : "#1f2937"}" pointer-events="none">${escapeXml(text)}</text>`,
        ]),
    `</g>`,
  ];
}

function svgOf(layout: Layout, path: readonly string[]): string {
  const critical = new Set(path);
  /** where each step on the critical path sits, for the line that links them */
  const anchors = new Map<string, { x0: number; x1: number; y: number }>();
  const span = Math.max(layout.span, 1);
  const x = (ms: number): number => GUTTER + (ms / span) * PLOT;
  let y = AXIS;
  const backgrounds: string[] = [];
  const bars: string[] = [];
  layout.lanes.forEach((lane, i) => {
    const h = Math.max(lane.rows * ROW + 2 * LANE_PAD, 44);
    backgrounds.push(
      `<rect class="lane-bg" x="0" y="${y}" width="${WIDTH}" height="${h}" fill="${i % 2 ? "#f6f8fa" : "#edf1f6"}"/>`,
      `<text class="lane-name" x="10" y="${y + 19}" font-size="13" font-weight="600" fill="#1f2937">${escapeXml(lane.name)}</text>`,
      `<text x="10" y="${y + 35}" font-size="11" fill="#6b7280">${escapeXml(lane.name === BUILD_LANE ? "no platform" : laneSummary(lane.steps))}</text>`,
    );
    bars.push(`<g class="lane" data-lane="${escapeXml(lane.name)}">`);
    for (const p of lane.steps) {
      const onPath = critical.has(p.step.id);
      bars.push(...barOf(p, x, y, layout.origin, onPath));
      if (onPath) {
        const x0 = x(p.start);
        const mid = y + LANE_PAD + p.row * ROW + ROW / 2;
        anchors.set(p.step.id, { x0, x1: Math.max(x0 + MIN_BAR_PX, x(p.end)), y: mid });
      }
    }
    bars.push(`</g>`);
    y += h + LANE_GAP;
  });
  const height = y;
  const tick = niceTick(span);
  const grid: string[] = [];
  for (let t = 0; t <= span + 1e-9; t += tick) {
    const tx = x(t).toFixed(1);
    grid.push(
      `<line x1="${tx}" y1="${AXIS - 6}" x2="${tx}" y2="${height - LANE_GAP}" stroke="#c9d1db" stroke-width="1" stroke-dasharray="2 3"/>`,
      `<text x="${tx}" y="${AXIS - 10}" font-size="11" fill="#4b5563" text-anchor="middle">${tickLabel(t, tick)}</text>`,
    );
  }
  // the critical path as one line from each step's end to the next one's start
  const links: string[] = [];
  for (let i = 1; i < path.length; i++) {
    const a = anchors.get(path[i - 1]!);
    const b = anchors.get(path[i]!);
    if (!a || !b || (a.y === b.y && b.x0 - a.x1 < 2)) continue;
    links.push(
      `<path class="critical-link" d="M${a.x1.toFixed(1)} ${a.y} C${(a.x1 + 12).toFixed(1)} ${a.y} ${(b.x0 - 12).toFixed(1)} ${b.y} ${b.x0.toFixed(1)} ${b.y}" fill="none" stroke="${COLORS.critical}" stroke-width="1.5" stroke-dasharray="4 3"/>`,
    );
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" role="img" aria-label="build timeline">`,
    `<defs><pattern id="emulated-stripes" width="7" height="7" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="7" fill="#ffffff" fill-opacity="0.25"/></pattern></defs>`,
    ...backgrounds,
    `<g class="axis">`,
    ...grid,
    `</g>`,
    ...bars,
    `<g class="critical-path" pointer-events="none">`,
    ...links,
    `</g>`,
    `</svg>`,
  ].join("\n");
}

function legend(): string {
  const item = (color: string, text: string, extra = ""): string =>
    `<span class="key"><svg width="26" height="14" aria-hidden="true"><rect x="1" y="1" width="24" height="12" rx="3" fill="${color}"${extra}/></svg>${text}</span>`;
  return [
    item(COLORS.native, "native"),
    item(COLORS.emulated, "emulated (QEMU)"),
    item(COLORS.cached, "cached"),
    item(COLORS.error, "failed"),
    item(COLORS.canceled, "canceled"),
    item("#ffffff", "critical path", ` stroke="${COLORS.critical}" stroke-width="2"`),
  ].join("");
}

export function timelineHtml(
  record: BuildRecord,
  steps: readonly Step[],
  now = Date.now(),
): string {
  const end = record.completedAt ?? now;
  const order = record.request.platforms;
  const layout = layoutSteps(steps, end, 0, order);
  // pack rows by visible width: a bar is at least MIN_BAR_PX wide
  const minMs = (Math.max(layout.span, 1) / PLOT) * (MIN_BAR_PX + 2);
  const packed = layoutSteps(steps, end, minMs, order);
  const path = criticalPath(steps, end);
  const critical = new Set(path);
  const byId = new Map(steps.map((s) => [s.id, s]));
  const counts = countSteps(steps);
  const failed = failedStep(steps);
  const platforms = record.request.platforms.length
    ? record.request.platforms.join(", ")
    : "host platform";
  const duration = formatDuration(end - record.createdAt);
  const status = record.status;
  const pathMs = path
    .map((id) => byId.get(id)!)
    .reduce((t, s) => t + ((s.completed ?? end) - (s.started ?? end)), 0);
  const meta: [string, string][] = [
    ["Ref", record.ref],
    ["Status", status],
    ["Started", new Date(record.createdAt).toISOString().replace("T", " ").slice(0, 19) + " UTC"],
    ["Duration", duration],
    ["Platforms", platforms],
    ["Steps", `${counts.total} (${counts.cached} cached)`],
    ["Critical path", `${path.length} steps, ${formatDuration(pathMs)}`],
  ];
  if (record.builder) meta.push(["Builder", record.builder]);
  if (record.node) meta.push(["Node", record.node]);
  const failure = failed
    ? `<section class="failure"><h2>Failed step</h2><p><b>${escapeXml(failed.name)}</b></p>${failed.command !== undefined ? `<p>command: <code>${escapeXml(failed.command)}</code></p>` : ""}${failed.exitCode !== undefined ? `<p>exit code: ${failed.exitCode}</p>` : ""}<pre>${escapeXml([failed.error ?? "", ...failed.logTail.map((l) => `> ${l}`)].join("\n"))}</pre></section>`
    : "";
  const slow = [...steps]
    .filter((s) => s.started !== undefined && s.mode !== "cached")
    .map((s) => ({ s, ms: (s.completed ?? end) - s.started! }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 8);
  const rows = slow
    .map(
      ({ s, ms }) =>
        `<tr${critical.has(s.id) ? ' class="crit"' : ""}><td class="num">${escapeXml(formatDuration(ms))}</td><td>${escapeXml(modeText(s))}</td><td>${escapeXml(s.platform ?? "")}${s.node ? ` · ${escapeXml(s.node)}` : ""}</td><td>${escapeXml(s.name)}</td></tr>`,
    )
    .join("");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=1280">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeXml(`kiln build ${record.name} (${record.ref}): timeline`)}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; margin: 0; background: #ffffff; }
main { width: ${WIDTH}px; margin: 0 auto; padding: 18px 0 28px; }
h1 { font-size: 20px; margin: 0 0 10px; }
h1 .status { font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 10px; vertical-align: middle; margin-left: 8px; color: #fff; }
.status.completed { background: #1f8a4c; } .status.error { background: ${COLORS.error}; } .status.canceled { background: ${COLORS.canceled}; } .status.running { background: ${COLORS.native}; }
h2 { font-size: 15px; margin: 18px 0 6px; }
dl { display: grid; grid-template-columns: repeat(4, auto 1fr); gap: 2px 12px; margin: 0 0 12px; font-size: 13px; }
dt { color: #6b7280; } dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.legend { display: flex; gap: 18px; font-size: 13px; margin: 6px 0 10px; }
.key { display: inline-flex; align-items: center; gap: 6px; }
svg .step:hover rect.bar { filter: brightness(1.12); }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
td { padding: 3px 12px 3px 0; border-bottom: 1px solid #eceff3; vertical-align: top; white-space: nowrap; }
td:last-child { white-space: normal; overflow-wrap: anywhere; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; width: 70px; }
tr.crit td:first-child { font-weight: 700; }
.failure { border-left: 4px solid ${COLORS.error}; padding: 4px 12px; background: #fdf2f2; margin-top: 14px; }
.failure p { margin: 4px 0; } pre { font-size: 12px; white-space: pre-wrap; margin: 6px 0; }
code { font-size: 12px; }
</style>
</head>
<body>
<main>
<h1>${escapeXml(record.name)}<span class="status ${escapeXml(status)}">${escapeXml(status)}</span></h1>
<dl>${meta.map(([k, v]) => `<dt>${escapeXml(k)}</dt><dd>${escapeXml(v)}</dd>`).join("")}</dl>
<div class="legend">${legend()}</div>
${svgOf(packed, path)}
${failure}
<h2>Slowest steps</h2>
<table>${rows}</table>
</main>
</body>
</html>
`;
}
