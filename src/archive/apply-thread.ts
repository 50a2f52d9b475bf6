/**
 * Large layers are unpacked on worker threads. Unpacking is mostly file system calls and tar
 * parsing, synchronous on the thread that does it: on kiln's one thread the base layers of a
 * multi-platform build unpack one after the other while the other cores idle (two extractions
 * of a 121 MB tar side by side take 0.49–0.52 s here, one after the other 0.81–0.97 s). A
 * worker costs ~50 ms to start and runs cold code, more than a small layer takes (busybox's
 * 1 MB unpacks in tens of milliseconds), so only blobs of OFF_THREAD_BYTES or more go to one.
 *
 * One layer per worker at a time, at most one worker per core; idle workers stay for the next
 * layer without holding the process open. A blob's bytes are posted as they arrive (a download
 * is unpacked as it goes), at most WINDOW chunks ahead of what the worker has taken.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { KilnError, messageOf } from "../errors.js";
import { applyLayerBlob, prepend, type AppliedLayer, type LayerApply } from "./compress.js";

/** Blobs at least this large (compressed) are unpacked on a worker thread. */
export const OFF_THREAD_BYTES = 16 << 20;

/** At most this many workers: one per core, up to 4. */
export const OFF_THREAD_WORKERS = Math.max(1, Math.min(4, availableParallelism()));

/** Chunks posted ahead of what the worker has taken (bounds the memory a fast source takes). */
const WINDOW = 16;

export interface ApplyJob {
  mediaType: string | undefined;
  targetDir: string;
  opts: LayerApply;
}

/** How a failure crosses between the threads: a KilnError keeps its code and hint. */
export interface ApplyFailure {
  code?: string;
  message: string;
  hint?: string;
}

/** To the worker: a job, its bytes, their end, or the source's failure. */
export type ToApplyWorker =
  { start: ApplyJob } | { chunk: Uint8Array } | { end: true } | { abort: ApplyFailure };

/** From the worker: a chunk taken, the job's outcome. */
export type FromApplyWorker = { taken: true } | { done: AppliedLayer } | { failure: ApplyFailure };

export function describeFailure(e: unknown): ApplyFailure {
  return e instanceof KilnError
    ? { code: e.code, message: e.message, hint: e.hint }
    : { message: messageOf(e) };
}

export function failureError(f: ApplyFailure): KilnError {
  return new KilnError(f.code ?? "E_LAYER_APPLY", f.message, f.hint ? { hint: f.hint } : {});
}

/**
 * The worker's script, next to this code: the bundle's (dist/apply-worker.cjs beside
 * dist/kiln.cjs), tsc's output, or the source when kiln runs under tsx (tests).
 */
function workerScript(): URL | undefined {
  return ["./apply-worker.cjs", "./apply-worker.js", "./apply-worker.ts"]
    .map((name) => new URL(name, import.meta.url))
    .find((u) => existsSync(fileURLToPath(u)));
}

/** What a running job hears from its worker. */
interface Listener {
  taken(): void;
  settle(outcome: { done: AppliedLayer } | { failure: ApplyFailure }): void;
}

class ApplyThreads {
  readonly #idle: Worker[] = [];
  readonly #waiting: ((w: Worker) => void)[] = [];
  readonly #jobs = new Map<Worker, Listener>();
  #started = 0;
  #script: URL | null | undefined;

  /** A worker free for one job; undefined when no worker script is there. */
  async #acquire(): Promise<Worker | undefined> {
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    this.#script ??= workerScript() ?? null;
    if (this.#script === null) return undefined;
    if (this.#started >= OFF_THREAD_WORKERS)
      return new Promise((resolve) => this.#waiting.push(resolve));
    this.#started++;
    const worker = this.#script.pathname.endsWith(".ts")
      ? // the source under tsx (tests): a worker does not inherit tsx's loader, so it registers it
        new Worker(
          `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(this.#script.href)}); });`,
          { eval: true },
        )
      : new Worker(this.#script);
    worker.on("message", (m: FromApplyWorker) => {
      const job = this.#jobs.get(worker);
      if (job === undefined) return;
      if ("taken" in m) {
        job.taken();
        return;
      }
      this.#jobs.delete(worker);
      job.settle(m);
      this.#release(worker);
    });
    const stopped = (why: string) => {
      this.#started--;
      const at = this.#idle.indexOf(worker);
      if (at >= 0) this.#idle.splice(at, 1);
      const job = this.#jobs.get(worker);
      this.#jobs.delete(worker);
      job?.settle({
        failure: {
          code: "E_LAYER_APPLY",
          message: `extracting a layer: its worker thread ${why}`,
          hint: "build again; if it recurs, report it with the output of `kiln build --progress plain`",
        },
      });
    };
    worker.on("error", (e) => {
      stopped(`failed: ${messageOf(e)}`);
    });
    worker.on("exit", (code) => {
      stopped(`exited (status ${code})`);
    });
    return worker;
  }

  #release(worker: Worker): void {
    const next = this.#waiting.shift();
    if (next !== undefined) {
      next(worker);
      return;
    }
    // an idle worker does not keep kiln running
    worker.unref();
    this.#idle.push(worker);
  }

  async apply(source: AsyncIterable<Uint8Array>, job: ApplyJob): Promise<AppliedLayer> {
    // A worker is taken once bytes flow: a download still queued for a connection must not
    // hold one while the connections are held by downloads that wait for a worker.
    const bytes = source[Symbol.asyncIterator]();
    const first = await bytes.next();
    const blob = first.done ? source : prepend(first.value, bytes);
    const worker = first.done ? undefined : await this.#acquire();
    if (worker === undefined) return applyLayerBlob(blob, job.mediaType, job.targetDir, job.opts);
    worker.ref();
    let ahead = 0;
    let wake: (() => void) | undefined;
    let outcome: { done: AppliedLayer } | { failure: ApplyFailure } | undefined;
    const finished = new Promise<void>((resolve) => {
      this.#jobs.set(worker, {
        taken: () => {
          ahead--;
          wake?.();
        },
        settle: (o) => {
          outcome = o;
          wake?.();
          resolve();
        },
      });
    });
    const post = (m: ToApplyWorker, transfer: ArrayBuffer[] = []) => {
      worker.postMessage(m, transfer);
    };
    post({ start: job });
    try {
      for await (const chunk of blob) {
        // the worker stopped taking bytes: it failed, or the tar ended before the blob
        if (outcome !== undefined) break;
        // a copy of its own, moved to the worker (a chunk may share its memory with others)
        const own = new Uint8Array(chunk.byteLength);
        own.set(chunk);
        post({ chunk: own }, [own.buffer]);
        ahead++;
        while (ahead >= WINDOW && outcome === undefined) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      }
      if (outcome === undefined) post({ end: true });
    } catch (e) {
      if (outcome === undefined) post({ abort: describeFailure(e) });
      await finished;
      throw e;
    }
    await finished;
    if (outcome === undefined) throw new KilnError("E_INTERNAL", "a layer ended without outcome");
    if ("failure" in outcome) throw failureError(outcome.failure);
    return outcome.done;
  }
}

const threads = new ApplyThreads();

/**
 * applyLayerBlob (decompress, extract and verify a layer blob read from `blob` into targetDir),
 * on a worker thread when the blob is large (opts.blobSize ≥ OFF_THREAD_BYTES).
 */
export function unpackLayerBlob(
  blob: AsyncIterable<Uint8Array>,
  mediaType: string | undefined,
  targetDir: string,
  opts: LayerApply,
): Promise<AppliedLayer> {
  return (opts.blobSize ?? 0) >= OFF_THREAD_BYTES
    ? threads.apply(blob, { mediaType, targetDir, opts })
    : applyLayerBlob(blob, mediaType, targetDir, opts);
}
