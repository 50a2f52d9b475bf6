/**
 * The steps of a recorded build, folded from its progress events: one per vertex, with its
 * times, how it ran (cached / native / emulated), where (platform, node), how it failed (error,
 * exit code, the tail of its output), and the critical path through them.
 */
import { mergeVertex, type ProgressEvent, type VertexEvent } from "../progress/index.js";
import type { StepCounts } from "./record.js";

/** Lines of output kept per step, for the failed step's report. */
export const LOG_TAIL_LINES = 16;

export type StepMode = "cached" | "native" | "emulated";

export interface Step {
  id: string;
  name: string;
  platform?: string;
  node?: string;
  /** the vertices it depends on; absent for steps outside the graph (exports, transfers) */
  inputs?: string[];
  started?: number;
  completed?: number;
  mode: StepMode;
  error?: string;
  canceled: boolean;
  exitCode?: number;
  /** the command of a failed RUN, from its error message */
  command?: string;
  /** the last lines the step printed */
  logTail: string[];
}

/** BuildKit's canceled marker (see docs/progress.md). */
export function isCanceledError(error: string): boolean {
  return error === "canceled" || error.endsWith(" canceled");
}

/** Folds the event stream into steps, in order of first appearance. */
export function foldSteps(events: Iterable<ProgressEvent>): Step[] {
  const vertices = new Map<string, VertexEvent>();
  const logs = new Map<string, { lines: string[]; partial: string }>();
  for (const ev of events) {
    if (ev.type === "vertex") vertices.set(ev.id, mergeVertex(vertices.get(ev.id), ev));
    else if (ev.type === "log") {
      let l = logs.get(ev.vertex);
      if (!l) logs.set(ev.vertex, (l = { lines: [], partial: "" }));
      const parts = (l.partial + ev.data).split("\n");
      l.partial = parts.pop()!;
      l.lines.push(...parts);
      if (l.lines.length > LOG_TAIL_LINES) l.lines.splice(0, l.lines.length - LOG_TAIL_LINES);
    }
  }
  return [...vertices.values()].map((v) => {
    const l = logs.get(v.id);
    const logTail = l ? [...l.lines, ...(l.partial ? [l.partial] : [])] : [];
    const failure = v.error === undefined ? {} : parseFailure(v.error);
    return {
      id: v.id,
      name: v.name,
      platform: v.platform,
      node: v.node,
      inputs: v.inputs,
      started: v.started,
      completed: v.completed,
      mode: v.cached ? "cached" : v.emulated ? "emulated" : "native",
      error: v.error,
      canceled: v.error !== undefined && isCanceledError(v.error),
      ...failure,
      logTail: logTail.slice(-LOG_TAIL_LINES),
    };
  });
}

/** The exit code and command in BuildKit's `process "…" did not complete successfully: exit code: N`. */
function parseFailure(error: string): { exitCode?: number; command?: string } {
  const m = /process (".*") did not complete successfully: exit code: (\d+)/.exec(error);
  if (!m) return {};
  let command: string | undefined;
  try {
    command = JSON.parse(m[1]!) as string;
  } catch {
    command = undefined;
  }
  return { exitCode: Number(m[2]), command };
}

/** The step that failed the build: the first failure that is not a cancellation. */
export function failedStep(steps: readonly Step[]): Step | undefined {
  return steps.find((s) => s.error !== undefined && !s.canceled);
}

export function countSteps(steps: readonly Step[]): StepCounts {
  return {
    total: steps.length,
    completed: steps.filter((s) => s.completed !== undefined && s.error === undefined).length,
    cached: steps.filter((s) => s.mode === "cached").length,
  };
}

/** Steps that ran or were answered from the cache: they have a start. */
export function timedSteps(steps: readonly Step[]): (Step & { started: number })[] {
  return steps.filter((s): s is Step & { started: number } => s.started !== undefined);
}

/**
 * The critical path: from the step that ended last, back through the dependencies that held
 * each step up — the input that ended last; for a step with no input that ran before it
 * (exports, context transfers, a FROM started late), the step that ended last before it
 * started (it waited for that one or for its slot). Cached steps take no time, so they never
 * hold up a step that does not depend on them. Returns step ids, first step first.
 */
export function criticalPath(steps: readonly Step[], now: number): string[] {
  // canceled steps end when a failure stops them: they never held the build up
  const timed = timedSteps(steps).filter((s) => !s.canceled);
  type Timed = (typeof timed)[number];
  const end = (s: Timed): number => s.completed ?? now;
  const latest = (xs: Timed[]): Timed | undefined =>
    xs.reduce<Timed | undefined>((a, s) => (a === undefined || end(s) > end(a) ? s : a), undefined);
  const byId = new Map(timed.map((s) => [s.id, s]));
  let cur = latest(timed);
  const path: string[] = [];
  const seen = new Set<string>();
  while (cur && !seen.has(cur.id)) {
    seen.add(cur.id);
    path.push(cur.id);
    const from: Timed = cur;
    const before = (s: Timed): boolean => !seen.has(s.id) && end(s) <= from.started;
    const inputs = (from.inputs ?? []).map((i) => byId.get(i)).filter((s) => s !== undefined);
    cur =
      latest(inputs.filter(before)) ??
      latest(timed.filter((s) => s.mode !== "cached" && before(s)));
  }
  return path.reverse();
}
