import type { ProgressEvent, ProgressSink, StatusEvent, VertexEvent } from "./events.js";
import {
  errorBlocks,
  formatLogLine,
  formatTransfer,
  summaryBlock,
  warningLine,
  warningsBlock,
} from "./format.js";
import { joinBlocks, writeAndFlush, type Output } from "./output.js";
import { BuildState, isCanceled, isDone, type VertexState } from "./state.js";

/** Transfer updates smaller than this share of the total, within STATUS_INTERVAL, are skipped. */
const STATUS_MIN_PROGRESS = 0.05;
const STATUS_INTERVAL_MS = 5000;

/**
 * BuildKit's plain output, for CI logs: output is grouped under `#N <name>` headers, a vertex
 * interrupted by another one gets `#N ...` and its header again when it resumes, and each vertex
 * ends with `#N DONE 1.2s`, `#N CACHED` or `#N ERROR: <message>`.
 */
export class PlainRenderer implements ProgressSink {
  readonly #out: Output;
  readonly #clock: () => number;
  readonly #state = new BuildState();
  #current: VertexState | undefined;
  #notFirst = false;
  #closed = false;
  readonly #lastStatus = new Map<string, { current: number; at: number }>();

  constructor(out: Output, opts: { clock?: () => number } = {}) {
    this.#out = out;
    this.#clock = opts.clock ?? Date.now;
  }

  write(ev: ProgressEvent): void {
    if (this.#closed) return;
    const change = this.#state.apply(ev);
    const v = change.vertex;
    let text = "";
    if (ev.type === "warning" && v === undefined) {
      text = this.#leave() + this.#separator() + `${warningLine(ev)}\n`;
    } else if (v !== undefined) {
      const status = ev.type === "status" ? this.#statusLine(v, ev) : undefined;
      const warning = ev.type === "warning" ? warningLine(ev) : undefined;
      const lines = [
        ...change.lines.map(formatLogLine),
        ...(status === undefined ? [] : [status]),
        ...(warning === undefined ? [] : [warning]),
        ...(change.finished ? [terminalLine(v.vertex)] : []),
      ];
      if (lines.length > 0 || change.becameVisible) text = this.#lines(v, lines);
      if (change.finished && this.#current === v) this.#current = undefined;
    }
    if (text !== "") this.#out.write(text);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    let text = "";
    for (const { vertex, line } of this.#state.flushPartials()) {
      text += this.#lines(vertex, [formatLogLine(line)]);
    }
    const errors = errorBlocks(this.#state);
    if (errors.length > 0) text += `${errors.join("\n")}\n`;
    text += joinBlocks([
      warningsBlock(this.#state.warnings),
      this.#state.summary ? summaryBlock(this.#state.summary) : [],
    ]);
    return writeAndFlush(this.#out, text);
  }

  /** Lines for `v`, after its header when another vertex was printing before. */
  #lines(v: VertexState, lines: string[]): string {
    let text = "";
    if (this.#current !== v) {
      text += this.#leave() + this.#separator() + `#${v.index} ${v.vertex.name}\n`;
      this.#current = v;
    }
    for (const l of lines) text += `#${v.index} ${l}\n`;
    return text;
  }

  #leave(): string {
    const c = this.#current;
    this.#current = undefined;
    return c !== undefined && !isDone(c.vertex) ? `#${c.index} ...\n` : "";
  }

  #separator(): string {
    const sep = this.#notFirst ? "\n" : "";
    this.#notFirst = true;
    return sep;
  }

  /** "#3 sha256:ab… 1.20MB / 3.40MB 0.4s done", or undefined when too little changed to print. */
  #statusLine(v: VertexState, s: StatusEvent): string | undefined {
    const now = this.#clock();
    const key = `${v.vertex.id}\0${s.id}`;
    const last = this.#lastStatus.get(key);
    if (last !== undefined && s.completed === undefined) {
      const progress = s.total ? (s.current - last.current) / s.total : 0;
      if (progress < STATUS_MIN_PROGRESS && now - last.at < STATUS_INTERVAL_MS) return undefined;
    }
    this.#lastStatus.set(key, { current: s.current, at: now });
    const bytes = formatTransfer(s.current, s.total);
    let tm = "";
    if (s.started !== undefined) {
      const secs = ((s.completed ?? now) - s.started) / 1000;
      if (secs > 0.01) tm = ` ${secs.toFixed(1)}s`;
    }
    if (s.completed !== undefined) tm += " done";
    return `${s.name ?? s.id}${bytes === "" ? "" : ` ${bytes}`}${tm}`;
  }
}

function terminalLine(v: VertexEvent): string {
  if (v.error !== undefined) return isCanceled(v) ? "CANCELED" : `ERROR: ${v.error}`;
  if (v.cached === true) return "CACHED";
  if (v.started !== undefined && v.completed !== undefined) {
    return `DONE ${((v.completed - v.started) / 1000).toFixed(1)}s`;
  }
  return "DONE";
}
