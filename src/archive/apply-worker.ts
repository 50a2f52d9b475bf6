// A worker thread that unpacks large layers (see apply-thread.ts): one job at a time, taken
// from kiln's thread as its bytes arrive; every chunk taken is acknowledged, and the outcome
// is the last message of a job.
import { parentPort } from "node:worker_threads";
import {
  describeFailure,
  failureError,
  type FromApplyWorker,
  type ToApplyWorker,
} from "./apply-thread.js";
import { applyLayerBlob } from "./compress.js";

const port = parentPort!;

function reply(m: FromApplyWorker): void {
  port.postMessage(m);
}

/** One job's bytes as they come from kiln's thread. */
class Inbox implements AsyncIterable<Uint8Array> {
  private readonly queue: ToApplyWorker[] = [];
  private wake: (() => void) | undefined;

  push(m: ToApplyWorker): void {
    this.queue.push(m);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const m = this.queue.shift();
      if (m === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if ("end" in m) return;
      if ("abort" in m) throw failureError(m.abort);
      if ("chunk" in m) {
        reply({ taken: true });
        yield m.chunk;
      }
    }
  }
}

let inbox: Inbox | undefined;

port.on("message", (m: ToApplyWorker) => {
  if (!("start" in m)) {
    inbox?.push(m);
    return;
  }
  const current = new Inbox();
  inbox = current;
  const { mediaType, targetDir, opts } = m.start;
  applyLayerBlob(current, mediaType, targetDir, opts).then(
    (done) => {
      reply({ done });
    },
    (e: unknown) => {
      reply({ failure: describeFailure(e) });
    },
  );
});
