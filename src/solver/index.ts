/**
 * The solver: runs a merged graph of vertices once per digest, with bounded parallelism and
 * a content-addressed cache. A vertex's cache key covers its definition digest, its inputs'
 * cache keys and, for content sources, a checksum of the content; it is computed without
 * running anything, so a fully cached build starts no process.
 *
 * A step that misses also has a content key, as BuildKit's content-based cache keys: the
 * inputs it reads only by content (a COPY --from's source stage) count by a checksum of what
 * it reads from them, the others by the key their result was found or made under. So a stage
 * that re-runs with the same output leaves the steps that copy from it cached.
 */
import { availableParallelism } from "node:os";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { canonicalJSON, opDigest, sha256, topoSort, type Vertex } from "../graph/index.js";

export interface VertexProgress {
  announce(v: Vertex): void;
  started(v: Vertex, opts: { emulated?: boolean }): void;
  cached(v: Vertex): void;
  completed(v: Vertex): void;
  failed(v: Vertex, message: string): void;
}

export interface RunContext {
  signal: AbortSignal;
  /** the vertex's cache key, stable across builds */
  cacheKey: string;
  progress: VertexProgress;
}

/** What the solver needs from the machine that executes ops. */
export interface Worker<R> {
  /** extra identity for content-addressed sources (e.g. a checksum of context files) */
  contentKey(v: Vertex, signal: AbortSignal): Promise<string | undefined>;
  /** whether contentKey reads content (files, a URL, a git ref) rather than answering at once */
  keyReadsContent(v: Vertex): boolean;
  /**
   * Indexes of the inputs v reads only by content (e.g. a COPY --from's source stage, not the
   * stage it copies into): their part of v's content key is `inputChecksum`.
   */
  contentInputs(v: Vertex): number[];
  /** a checksum of what v reads from its input `index`, whose result is `input` */
  inputChecksum(v: Vertex, index: number, input: R, signal: AbortSignal): Promise<string>;
  run(v: Vertex, inputs: R[], ctx: RunContext): Promise<R>;
  /** whether running v needs an emulator (shown in progress and the summary) */
  emulated(v: Vertex): boolean;
}

export interface ResultCache<R> {
  /** a stored result that is still usable, or undefined (`v` is the vertex the key is for) */
  load(key: string, v: Vertex): Promise<R | undefined>;
  /** `contentKey`: the content key the result also has (see Solver), kept with it */
  save(key: string, result: R, contentKey?: string): Promise<void>;
  /** the content key saved with the result under `key`, if any */
  contentKeyOf(key: string): Promise<string | undefined>;
  /** makes a loaded result usable as a step's input (e.g. unpacks what was only referenced) */
  prepare?(result: R): Promise<R>;
}

/** A key a result is recorded under, and the keys it was made from (for cache exports). */
export interface KeyRecord {
  key: string;
  inputs: string[];
}

export interface SolveOptions {
  maxParallelism?: number;
  /** vertices that must run even when cached (`--no-cache`, `--no-cache-filter`) */
  noCache?: (v: Vertex) => boolean;
  /**
   * Start a step's inputs while its key still waits for content (see Solver.compute). Only
   * safe to waste no work when every step that ever ran left a record, i.e. without imported
   * caches, which may hold a step's record but not its inputs' (mode=min).
   */
  speculate?: boolean;
  signal?: AbortSignal;
}

/** The error of a step stopped because the build was (BuildKit's marker, docs/progress.md). */
const CANCELED = "canceled";

export function defaultParallelism(): number {
  return Math.max(2, availableParallelism());
}

/** A counting semaphore; `locked` ops take all permits. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}

  async acquire(): Promise<() => void> {
    if (this.free > 0) {
      this.free--;
    } else {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

export class Solver<R> {
  private readonly keys = new Map<string, Promise<string>>();
  /** a vertex's own content part of its keys (contentKey's answer), by digest */
  private readonly ownContent = new Map<string, Promise<string | undefined>>();
  /** content keys computed in this build, by digest */
  private readonly contentKeys = new Map<string, KeyRecord>();
  /** the key each solved vertex's result was found or made under, by digest */
  private readonly found = new Map<string, string>();
  private readonly forcedByContent = new Map<string, boolean>();
  private readonly results = new Map<string, Promise<R>>();
  private readonly forced = new Map<string, boolean>();
  private readonly slowKeys = new Map<string, boolean>();
  /** digests whose result is being computed */
  private readonly running = new Set<string>();
  private readonly semaphore: Semaphore;
  private readonly abort = new AbortController();

  constructor(
    private readonly worker: Worker<R>,
    private readonly cache: ResultCache<R>,
    private readonly progress: VertexProgress,
    private readonly opts: SolveOptions = {},
  ) {
    this.semaphore = new Semaphore(opts.maxParallelism ?? defaultParallelism());
    opts.signal?.addEventListener("abort", () => {
      this.abort.abort(opts.signal?.reason);
    });
  }

  /** Solves every root; the first failure cancels the rest and is rethrown. */
  async solve(roots: readonly Vertex[]): Promise<R[]> {
    const all = topoSort(roots);
    for (const v of all) this.progress.announce(v);
    try {
      const out = await Promise.all(roots.map((r) => this.result(r)));
      // inputs of a cache hit were never needed: they are cached too (as BuildKit shows them)
      for (const v of all) if (!this.results.has(v.digest)) this.progress.cached(v);
      // inputs started ahead of a step that then hit the cache are not needed either
      await this.settleSpeculation();
      return out;
    } catch (e) {
      this.abort.abort(e);
      // let running vertices observe the abort and clean up before we report
      await Promise.allSettled([...this.results.values()]);
      throw e;
    }
  }

  cacheKey(v: Vertex): Promise<string> {
    let p = this.keys.get(v.digest);
    if (!p) {
      p = (async () => {
        const inputs = await Promise.all(v.inputs.map((i) => this.cacheKey(i)));
        const content = await this.contentOf(v);
        return sha256(canonicalJSON({ digest: v.digest, inputs, content: content ?? null }));
      })();
      this.keys.set(v.digest, p);
    }
    return p;
  }

  private contentOf(v: Vertex): Promise<string | undefined> {
    let p = this.ownContent.get(v.digest);
    if (!p) this.ownContent.set(v.digest, (p = this.worker.contentKey(v, this.abort.signal)));
    return p;
  }

  /**
   * The keys v's result is recorded under in this build: its cache key (with its inputs'), and
   * its content key when one was computed.
   */
  async records(v: Vertex): Promise<KeyRecord[]> {
    const key = {
      key: await this.cacheKey(v),
      inputs: await Promise.all(v.inputs.map((i) => this.cacheKey(i))),
    };
    const computed = this.contentKeys.get(v.digest);
    if (computed) return [key, computed];
    // a result found by its cache key, or not needed (an input of a hit), has the content key
    // saved with it, if any (its parts unknown)
    const saved = this.found.get(v.digest) ?? (await this.cache.contentKeyOf(key.key));
    return saved !== undefined && saved !== key.key ? [key, { key: saved, inputs: [] }] : [key];
  }

  /**
   * v's content key once its inputs are solved, or undefined when it would be its cache key
   * (no input read by content, every input found under its own cache key). The op's own
   * digest stands for v (v.digest also covers its inputs' definitions, which the inputs'
   * parts replace).
   */
  private async contentKey(v: Vertex, inputs: R[]): Promise<KeyRecord | undefined> {
    const byContent = new Set(this.worker.contentInputs(v));
    let differs = byContent.size > 0;
    const parts = await Promise.all(
      v.inputs.map(async (i, n) => {
        if (byContent.has(n)) {
          const sum = await this.worker.inputChecksum(v, n, inputs[n]!, this.abort.signal);
          return sha256(canonicalJSON({ content: sum }));
        }
        const key = await this.cacheKey(i);
        const found = this.found.get(i.digest) ?? key;
        if (found !== key) differs = true;
        return found;
      }),
    );
    if (!differs) return undefined;
    const content = await this.contentOf(v);
    const key = sha256(canonicalJSON({ op: opDigest(v), inputs: parts, content: content ?? null }));
    const record = { key, inputs: parts };
    this.contentKeys.set(v.digest, record);
    return record;
  }

  /**
   * Whether v must run: it is excluded from the cache, or one of its inputs must run. A cached
   * result downstream of a re-run step could hold files from an older run of that step; an
   * image's or context's content is already fixed by its cache key, so those do not spread.
   */
  private mustRun(v: Vertex): boolean {
    let f = this.forced.get(v.digest);
    if (f === undefined) {
      f =
        (this.opts.noCache?.(v) ?? false) ||
        v.inputs.some((i) => i.op.kind !== "image" && i.op.kind !== "local" && this.mustRun(i));
      this.forced.set(v.digest, f);
    }
    return f;
  }

  /**
   * Whether v must run even when its content key is cached: as mustRun, except that an input
   * read by content does not force it (its part of the key is what it reads, however made).
   */
  private mustRunByContent(v: Vertex): boolean {
    let f = this.forcedByContent.get(v.digest);
    if (f === undefined) {
      const byContent = new Set(this.worker.contentInputs(v));
      f =
        (this.opts.noCache?.(v) ?? false) ||
        v.inputs.some(
          (i, n) =>
            i.op.kind !== "image" &&
            i.op.kind !== "local" &&
            !byContent.has(n) &&
            this.mustRunByContent(i),
        );
      this.forcedByContent.set(v.digest, f);
    }
    return f;
  }

  private result(v: Vertex): Promise<R> {
    let p = this.results.get(v.digest);
    if (!p) {
      this.running.add(v.digest);
      p = this.compute(v).finally(() => this.running.delete(v.digest));
      this.results.set(v.digest, p);
    }
    return p;
  }

  /** Whether v's key waits for content read by v or by a step before it. */
  private slowKey(v: Vertex): boolean {
    let slow = this.slowKeys.get(v.digest);
    if (slow === undefined) {
      slow = this.worker.keyReadsContent(v) || v.inputs.some((i) => this.slowKey(i));
      this.slowKeys.set(v.digest, slow);
    }
    return slow;
  }

  /**
   * Whatever still runs once the roots are done was started ahead of a step that hit the
   * cache: cancel it and wait until it has cleaned up.
   */
  private async settleSpeculation(): Promise<void> {
    if (this.running.size === 0) return;
    this.abort.abort(new KilnError("E_CANCELED", "not needed: a later step was cached"));
    await Promise.allSettled([...this.results.values()]);
  }

  private async compute(v: Vertex): Promise<R> {
    // A key that waits for content (a context checksum) would hold back the steps before it,
    // which need no such wait: they start now. When they are not cached, the step cannot be
    // either (its key includes theirs), so this only brings their work forward. A context
    // source has nothing to bring forward (its content is read for the key anyway).
    if (this.opts.speculate && this.slowKey(v))
      for (const i of v.inputs) if (i.op.kind !== "local") this.result(i).catch(() => undefined);
    const key = await this.cacheKey(v);
    if (!this.mustRun(v)) {
      const hit = await this.cache.load(key, v);
      if (hit !== undefined) {
        this.progress.cached(v);
        // the key its dependants' content keys were made from when it had one
        this.found.set(v.digest, (await this.cache.contentKeyOf(key)) ?? key);
        return hit;
      }
    }
    const inputs = await Promise.all(
      v.inputs.map(async (i) => {
        const r = await this.result(i);
        return this.cache.prepare ? this.cache.prepare(r) : r;
      }),
    );
    this.throwIfAborted();
    const content = await this.contentKey(v, inputs);
    if (content && !this.mustRunByContent(v)) {
      const hit = await this.cache.load(content.key, v);
      if (hit !== undefined) {
        // the next build finds it by its cache key at once
        await this.cache.save(key, hit, content.key);
        this.progress.cached(v);
        this.found.set(v.digest, content.key);
        return hit;
      }
    }
    const release = await this.semaphore.acquire();
    try {
      this.throwIfAborted();
      this.progress.started(v, { emulated: this.worker.emulated(v) });
      const r = await this.worker.run(v, inputs, {
        signal: this.abort.signal,
        cacheKey: key,
        progress: this.progress,
      });
      await this.cache.save(key, r, content?.key);
      if (content) await this.cache.save(content.key, r);
      this.found.set(v.digest, content?.key ?? key);
      this.progress.completed(v);
      return r;
    } catch (e) {
      const err = isKilnError(e)
        ? e
        : new KilnError("E_STEP_FAILED", `${v.name}: ${messageOf(e)}`, { cause: e });
      // A step that ends once the build is being stopped (another step failed, or the user
      // canceled) was stopped, whatever its own error says (a killed container's): it shows
      // as canceled, as in BuildKit, and only the failure that stopped the build as an error.
      if (!this.abort.signal.aborted) this.progress.failed(v, err.message);
      else if (err !== this.abort.signal.reason) this.progress.failed(v, CANCELED);
      throw err;
    } finally {
      release();
    }
  }

  private throwIfAborted(): void {
    if (this.abort.signal.aborted) {
      const reason: unknown = this.abort.signal.reason;
      throw isKilnError(reason) ? reason : new KilnError("E_CANCELED", "build canceled");
    }
  }
}
