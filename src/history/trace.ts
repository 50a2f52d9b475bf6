/**
 * A build record as Chrome trace events (the JSON object format Perfetto and chrome://tracing
 * open): one process per lane (platform, or node and platform), one thread per row, one
 * complete ("X") event per step. Emulated steps carry the category `emulated`.
 */
import type { BuildRecord } from "./record.js";
import { layoutSteps } from "./lanes.js";
import type { Step } from "./steps.js";

interface TraceEvent {
  name: string;
  ph: "X" | "M";
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  args: Record<string, unknown>;
}

export interface Trace {
  traceEvents: TraceEvent[];
  displayTimeUnit: "ms";
  otherData: Record<string, string>;
}

export function traceOf(record: BuildRecord, steps: readonly Step[], now = Date.now()): Trace {
  const layout = layoutSteps(steps, record.completedAt ?? now, 0, record.request.platforms);
  const events: TraceEvent[] = [];
  layout.lanes.forEach((lane, i) => {
    const pid = i + 1;
    events.push(
      { name: "process_name", ph: "M", pid, tid: 0, args: { name: lane.name } },
      { name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: i } },
    );
    for (let row = 0; row < lane.rows; row++) {
      events.push({
        name: "thread_name",
        ph: "M",
        pid,
        tid: row + 1,
        args: { name: `${lane.name} #${row + 1}` },
      });
    }
    for (const p of lane.steps) {
      const s = p.step;
      events.push({
        name: s.name,
        ph: "X",
        pid,
        tid: p.row + 1,
        // microseconds
        ts: Math.round(p.start * 1000),
        dur: Math.round((p.end - p.start) * 1000),
        cat: s.error !== undefined ? `${s.mode},${s.canceled ? "canceled" : "error"}` : s.mode,
        args: {
          id: s.id,
          ...(s.platform === undefined ? {} : { platform: s.platform }),
          ...(s.node === undefined ? {} : { node: s.node }),
          cached: s.mode === "cached",
          emulated: s.mode === "emulated",
          ...(s.error === undefined ? {} : { error: s.error }),
          ...(s.exitCode === undefined ? {} : { exitCode: s.exitCode }),
        },
      });
    }
  });
  return {
    traceEvents: events,
    displayTimeUnit: "ms",
    otherData: {
      ref: record.ref,
      name: record.name,
      status: record.status,
      createdAt: new Date(record.createdAt).toISOString(),
      ...(layout.lanes.length ? { origin: new Date(layout.origin).toISOString() } : {}),
    },
  };
}
