import { mergeVertex } from "./bus.js";
import type {
  LogEvent,
  ProgressEvent,
  StatusEvent,
  SummaryEvent,
  VertexEvent,
  WarningEvent,
} from "./events.js";

/** A complete log line, stamped with seconds since its vertex started. */
export interface LogLine {
  seconds: number;
  text: string;
}

export interface VertexState {
  /** 1-based, in order of first appearance: the `#N` of plain output. */
  readonly index: number;
  vertex: VertexEvent;
  statuses: Map<string, StatusEvent>;
  warnings: WarningEvent[];
  /** The last few complete log lines (for the live tail and the error report). */
  lines: LogLine[];
  /** A line still waiting for its newline. */
  partial: { startedAt: number; text: string } | undefined;
}

/** How many log lines each vertex remembers: enough for the error report after a failure. */
const KEPT_LINES = 10;

export function isDone(v: VertexEvent): boolean {
  return v.completed !== undefined || v.cached === true || v.error !== undefined;
}

/** Cancellation (a sibling failed first) is not itself a failure worth a log report. */
export function isCanceled(v: VertexEvent): boolean {
  return v.error !== undefined && (v.error === "canceled" || v.error.endsWith(" canceled"));
}

/** Shown once it started or finished; a merely announced vertex only counts towards the total. */
export function isVisible(v: VertexEvent): boolean {
  return v.started !== undefined || isDone(v);
}

/** What one event changed, for renderers that print increments (plain). */
export interface Change {
  vertex: VertexState | undefined;
  becameVisible: boolean;
  finished: boolean;
  /** Log lines completed by this event (including a partial line flushed by finishing). */
  lines: LogLine[];
}

/** Folds the event stream into per-vertex state; shared by all human-readable renderers. */
export class BuildState {
  readonly vertices = new Map<string, VertexState>();
  /** Vertices in the order they became visible. */
  readonly visible: VertexState[] = [];
  readonly warnings: WarningEvent[] = [];
  summary: SummaryEvent | undefined;
  /** When the first vertex started. */
  startedAt: number | undefined;

  apply(ev: ProgressEvent): Change {
    switch (ev.type) {
      case "vertex":
        return this.#vertex(ev);
      case "log":
        return this.#log(ev);
      case "status": {
        const v = this.#get(ev.vertex);
        v.statuses.set(ev.id, ev);
        return { vertex: v, ...this.#reveal(v), finished: false, lines: [] };
      }
      case "warning": {
        this.warnings.push(ev);
        const v = ev.vertex === undefined ? undefined : this.#get(ev.vertex);
        v?.warnings.push(ev);
        return { vertex: v, becameVisible: false, finished: false, lines: [] };
      }
      case "summary":
        this.summary = ev;
        return { vertex: undefined, becameVisible: false, finished: false, lines: [] };
    }
  }

  /** Flushes every vertex's unterminated line (at the end of the build). */
  flushPartials(): { vertex: VertexState; line: LogLine }[] {
    const out: { vertex: VertexState; line: LogLine }[] = [];
    for (const v of this.vertices.values()) {
      const line = flushPartial(v);
      if (line) out.push({ vertex: v, line });
    }
    return out;
  }

  counts(): { done: number; total: number } {
    let done = 0;
    for (const v of this.vertices.values()) if (isDone(v.vertex)) done++;
    return { done, total: this.vertices.size };
  }

  #get(id: string): VertexState {
    let v = this.vertices.get(id);
    if (v === undefined) {
      // Logs or statuses may name a vertex before its announcement arrives.
      v = {
        index: this.vertices.size + 1,
        vertex: { type: "vertex", id, name: id },
        statuses: new Map(),
        warnings: [],
        lines: [],
        partial: undefined,
      };
      this.vertices.set(id, v);
    }
    return v;
  }

  #reveal(v: VertexState): { becameVisible: boolean } {
    if (this.visible.includes(v)) return { becameVisible: false };
    if (!isVisible(v.vertex) && v.statuses.size === 0 && v.lines.length === 0) {
      return { becameVisible: false };
    }
    this.visible.push(v);
    return { becameVisible: true };
  }

  #vertex(ev: VertexEvent): Change {
    const v = this.#get(ev.id);
    const wasDone = isDone(v.vertex);
    v.vertex = mergeVertex(v.vertex, ev);
    if (v.vertex.started !== undefined) {
      this.startedAt = Math.min(this.startedAt ?? Infinity, v.vertex.started);
    }
    const finished = !wasDone && isDone(v.vertex);
    const line = finished ? flushPartial(v) : undefined;
    return { vertex: v, ...this.#reveal(v), finished, lines: line ? [line] : [] };
  }

  #log(ev: LogEvent): Change {
    const v = this.#get(ev.vertex);
    const lines: LogLine[] = [];
    const parts = ev.data.split("\n");
    const last = parts.pop()!;
    for (const text of parts) {
      const head = v.partial;
      v.partial = undefined;
      lines.push(lineAt(v, head?.startedAt ?? ev.timestamp, (head?.text ?? "") + text));
    }
    if (last !== "") {
      v.partial = {
        startedAt: v.partial?.startedAt ?? ev.timestamp,
        text: (v.partial?.text ?? "") + last,
      };
    }
    keep(v, lines);
    return { vertex: v, ...this.#reveal(v), finished: false, lines };
  }
}

function flushPartial(v: VertexState): LogLine | undefined {
  if (v.partial === undefined) return undefined;
  const line = lineAt(v, v.partial.startedAt, v.partial.text);
  v.partial = undefined;
  keep(v, [line]);
  return line;
}

/** Stamps a line with seconds since its vertex started (0 when it has not started yet). */
function lineAt(v: VertexState, at: number, text: string): LogLine {
  return { seconds: Math.max(0, (at - (v.vertex.started ?? at)) / 1000), text };
}

function keep(v: VertexState, lines: LogLine[]): void {
  if (lines.length === 0) return;
  v.lines.push(...lines);
  if (v.lines.length > KEPT_LINES) v.lines.splice(0, v.lines.length - KEPT_LINES);
}
