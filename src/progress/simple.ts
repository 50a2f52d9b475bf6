import type { ProgressEvent, ProgressSink } from "./events.js";
import { errorBlocks } from "./format.js";
import { writeAndFlush, type Output } from "./output.js";
import { BuildState, isCanceled } from "./state.js";

/** One JSON event per line: exactly the ProgressEvent objects, the same stream the daemon sends. */
export class RawJsonRenderer implements ProgressSink {
  readonly #out: Output;
  #closed = false;

  constructor(out: Output) {
    this.#out = out;
  }

  write(ev: ProgressEvent): void {
    if (this.#closed) return;
    this.#out.write(`${JSON.stringify(ev)}\n`);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return writeAndFlush(this.#out, "");
  }
}

/** Nothing but failures, reported when the build ends: each failed step and its last output. */
export class QuietRenderer implements ProgressSink {
  readonly #out: Output;
  readonly #state = new BuildState();
  #closed = false;

  constructor(out: Output) {
    this.#out = out;
  }

  write(ev: ProgressEvent): void {
    if (!this.#closed) this.#state.apply(ev);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#state.flushPartials();
    const failed = [...this.#state.vertices.values()]
      .map((v) => v.vertex)
      .filter((v) => v.error !== undefined && !isCanceled(v));
    const lines = [
      ...errorBlocks(this.#state),
      ...failed.map((v) => `ERROR: ${v.name}: ${v.error}`),
    ];
    return writeAndFlush(this.#out, lines.length > 0 ? `${lines.join("\n")}\n` : "");
  }
}
