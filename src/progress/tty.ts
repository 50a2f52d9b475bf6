import type { ProgressEvent, ProgressSink } from "./events.js";
import {
  errorBlocks,
  formatSeconds,
  formatTransfer,
  summaryBlock,
  warningLine,
  warningsBlock,
} from "./format.js";
import { joinBlocks, writeAndFlush, type Output } from "./output.js";
import { BuildState, isCanceled, isDone, type VertexState } from "./state.js";
import {
  cursorUp,
  eraseDown,
  eraseLineEnd,
  fitLine,
  hideCursor,
  paint,
  sanitizeLine,
  showCursor,
} from "./terminal.js";

/** Log lines shown under each running vertex. */
const LOG_TAIL = 6;

export interface TtyOptions {
  clock?: () => number;
  /** Colors; default on. */
  color?: boolean;
  /** Terminal size; default the stream's own (`columns`/`rows`), else 80×24. */
  columns?: number;
  rows?: number;
  /** Minimum time between redraws, and the refresh period of running timers. */
  refreshMs?: number;
  /** Run the refresh timer; off, the view redraws only on events (tests drive it that way). */
  timers?: boolean;
  /** The header's verb: "[+] Building 1.2s (3/5)". */
  phase?: string;
}

interface Section {
  v: VertexState;
  head: string[];
  logs: string[];
}

/**
 * The live view, after buildx: a header, one line per vertex with its timer, transfers and
 * warnings beneath it, and the tail of each running vertex's output. The block is redrawn in
 * place by moving the cursor up over it; when it outgrows the terminal, finished vertices are
 * written once above it (the stable region) and leave the live block.
 */
export class TtyRenderer implements ProgressSink {
  readonly #out: Output;
  readonly #clock: () => number;
  readonly #color: boolean;
  readonly #refreshMs: number;
  readonly #phase: string;
  readonly #columns: number | undefined;
  readonly #rows: number | undefined;
  readonly #createdAt: number;
  readonly #state = new BuildState();
  readonly #committed = new Set<VertexState>();
  readonly #ticker: NodeJS.Timeout | undefined;
  readonly #onResize = (): void => {
    this.#draw(false);
  };
  #drawn = 0;
  #lastDraw = -Infinity;
  #dirty = false;
  #closed = false;

  constructor(out: Output, opts: TtyOptions = {}) {
    this.#out = out;
    this.#clock = opts.clock ?? Date.now;
    this.#color = opts.color ?? true;
    this.#refreshMs = opts.refreshMs ?? 100;
    this.#phase = opts.phase ?? "Building";
    this.#columns = opts.columns;
    this.#rows = opts.rows;
    this.#createdAt = this.#clock();
    if (opts.timers ?? true) {
      // Picks up throttled changes and keeps running timers ticking; never keeps the process up.
      this.#ticker = setInterval(() => {
        if (this.#dirty || this.#anyRunning()) this.#draw(false);
      }, this.#refreshMs).unref();
    }
    out.on("resize", this.#onResize);
  }

  write(ev: ProgressEvent): void {
    if (this.#closed) return;
    this.#state.apply(ev);
    this.#dirty = true;
    if (this.#clock() - this.#lastDraw >= this.#refreshMs) this.#draw(false);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#ticker);
    this.#out.removeListener("resize", this.#onResize);
    const final = this.#frame(true);
    const errors = errorBlocks(this.#state).map((l) => paint(this.#color, "red", l));
    const tail = joinBlocks([
      warningsBlock(this.#state.warnings).map((l) => paint(this.#color, "yellow", l)),
      this.#state.summary ? summaryBlock(this.#state.summary) : [],
    ]);
    const errorText = errors.length > 0 ? `${errors.join("\n")}\n` : "";
    return writeAndFlush(this.#out, final + errorText + tail);
  }

  #anyRunning(): boolean {
    return this.#state.visible.some((v) => !isDone(v.vertex));
  }

  #draw(final: boolean): void {
    this.#out.write(this.#frame(final));
  }

  /** The escape sequences and lines that replace the previously drawn block. */
  #frame(final: boolean): string {
    const now = this.#clock();
    this.#lastDraw = now;
    this.#dirty = false;
    const out = this.#out as { columns?: number; rows?: number };
    const width = this.#columns ?? (out.columns || 80);
    const maxLines = final ? Infinity : Math.max(2, (this.#rows ?? (out.rows || 24)) - 1);

    let sections: Section[] = this.#state.visible
      .filter((v) => !this.#committed.has(v))
      .map((v) => ({
        v,
        head: this.#vertexLines(v, now, width),
        logs: final ? [] : this.#logs(v, width),
      }));
    const size = (): number => 1 + sections.reduce((n, s) => n + s.head.length + s.logs.length, 0);

    // Too tall to redraw in place: finished vertices leave for the stable region, oldest first.
    const stable: string[] = [];
    for (const s of sections) {
      if (size() <= maxLines) break;
      if (!isDone(s.v.vertex)) continue;
      stable.push(...s.head);
      this.#committed.add(s.v);
      sections = sections.filter((x) => x !== s);
    }
    if (size() > maxLines) sections = sections.map((s) => ({ ...s, logs: [] }));

    const block = [
      this.#header(now, final, width),
      ...sections.flatMap((s) => [...s.head, ...s.logs]),
    ];
    const lines = [...stable, ...block.slice(0, maxLines)];
    const text =
      hideCursor +
      cursorUp(this.#drawn) +
      "\r" +
      lines.map((l) => l + eraseLineEnd + "\n").join("") +
      eraseDown +
      showCursor;
    this.#drawn = Math.min(block.length, maxLines);
    return text;
  }

  #header(now: number, final: boolean, width: number): string {
    const { done, total } = this.#state.counts();
    const elapsed = formatSeconds(now - (this.#state.startedAt ?? this.#createdAt));
    const finished = final && total > 0 && done === total ? " FINISHED" : "";
    return fitLine(`[+] ${this.#phase} ${elapsed} (${done}/${total})${finished}`, "", width);
  }

  /** The vertex line, then its transfers and warnings. */
  #vertexLines(v: VertexState, now: number, width: number): string[] {
    const x = v.vertex;
    const prefix =
      x.error === undefined ? (x.cached ? "CACHED " : "") : isCanceled(x) ? "CANCELED " : "ERROR ";
    const style = x.error === undefined ? "blue" : isCanceled(x) ? "yellow" : "red";
    const vertexLine = fitLine(
      ` => ${prefix}${oneLine(x.name)}`,
      timer(x.started, x.completed, now) ?? "0.0s",
      width,
    );
    const lines = [isDone(x) ? paint(this.#color, style, vertexLine) : vertexLine];
    for (const s of v.statuses.values()) {
      const bytes = formatTransfer(s.current, s.total);
      const line = fitLine(
        ` => => ${oneLine(s.name ?? s.id)}${bytes === "" ? "" : ` ${bytes}`}`,
        timer(s.started, s.completed, now) ?? "",
        width,
      );
      lines.push(s.completed === undefined ? line : paint(this.#color, "blue", line));
    }
    for (const w of v.warnings) {
      lines.push(
        paint(this.#color, "yellow", fitLine(` => ${oneLine(warningLine(w))}`, "", width)),
      );
    }
    return lines;
  }

  /** The last lines of a running vertex's output, dimmed. */
  #logs(v: VertexState, width: number): string[] {
    if (v.vertex.started === undefined || isDone(v.vertex)) return [];
    const texts = v.lines.map((l) => l.text);
    if (v.partial !== undefined) texts.push(v.partial.text);
    return texts
      .slice(-LOG_TAIL)
      .map((t) => paint(this.#color, "dim", fitLine(` => => # ${sanitizeLine(t)}`, "", width)));
  }
}

/** "3.2s" since `started` (until `completed`, else now); under 0.05 s shows as 0.0s. */
function timer(
  started: number | undefined,
  completed: number | undefined,
  now: number,
): string | undefined {
  if (started === undefined) return undefined;
  const ms = (completed ?? now) - started;
  return formatSeconds(ms < 50 ? 0 : ms);
}

/** Names can span lines (heredocs); a view line cannot. */
function oneLine(s: string): string {
  return sanitizeLine(s.replace(/\s*[\r\n]+\s*/g, " "));
}
