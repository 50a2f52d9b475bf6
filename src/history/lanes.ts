/**
 * Where each step goes in a picture of the build (the timeline, the trace): one lane per
 * platform (per node and platform in a multi-node build), and within a lane as many rows as
 * steps ran at once, so bars never overlap.
 */
import { timedSteps, type Step } from "./steps.js";

/** The lane of steps that belong to no platform: context transfers, exports, merges. */
export const BUILD_LANE = "build";

export interface PlacedStep {
  step: Step & { started: number };
  /** ms from the start of the build */
  start: number;
  end: number;
  row: number;
}

export interface Lane {
  name: string;
  platform?: string;
  node?: string;
  rows: number;
  steps: PlacedStep[];
}

export interface Layout {
  /** ms since the epoch of the first step's start */
  origin: number;
  /** ms from origin to the last step's end */
  span: number;
  lanes: Lane[];
}

function laneName(s: Step): string {
  if (s.platform === undefined) return s.node === undefined ? BUILD_LANE : s.node;
  return s.node === undefined ? s.platform : `${s.node} · ${s.platform}`;
}

/**
 * `now` ends the steps still running (or cut off); rows are packed as if each step lasted at
 * least `minMs` (a bar's smallest visible width); platform lanes follow `order`.
 */
export function layoutSteps(
  steps: readonly Step[],
  now: number,
  minMs = 0,
  order: readonly string[] = [],
): Layout {
  const timed = timedSteps(steps);
  const origin = Math.min(...timed.map((s) => s.started));
  const lanes = new Map<string, Lane>();
  let span = 0;
  const ordered = [...timed].sort((a, b) => a.started - b.started);
  const rowEnds = new Map<string, number[]>();
  for (const step of ordered) {
    const name = laneName(step);
    let lane = lanes.get(name);
    if (!lane) {
      lane = { name, platform: step.platform, node: step.node, rows: 0, steps: [] };
      lanes.set(name, lane);
      rowEnds.set(name, []);
    }
    const start = step.started - origin;
    const end = Math.max(start, (step.completed ?? now) - origin);
    span = Math.max(span, end);
    const ends = rowEnds.get(name)!;
    const packEnd = Math.max(end, start + minMs);
    // the first row free by this start; two zero-length steps at one time take two rows
    let row = ends.findIndex((e) => e < start || (e === start && packEnd > start));
    if (row < 0) row = ends.length;
    ends[row] = packEnd;
    lane.rows = Math.max(lane.rows, row + 1);
    lane.steps.push({ step, start, end, row });
  }
  // platforms in the order they were asked for, then the rest; the build lane last
  const rank = (l: Lane): number => {
    const i = l.platform === undefined ? -1 : order.indexOf(l.platform);
    return l.name === BUILD_LANE ? Infinity : i < 0 ? order.length : i;
  };
  const sorted = [...lanes.values()].sort(
    (a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name),
  );
  return { origin: timed.length ? origin : 0, span, lanes: sorted };
}
