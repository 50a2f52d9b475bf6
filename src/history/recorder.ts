/**
 * Records one build while it runs: a progress sink that appends every event to the record's
 * events file (synchronously, so a build killed at any moment leaves what it reported), and the
 * record itself, finished with the result or the error when the build ends.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, join, resolve } from "node:path";
import { isKilnError, messageOf } from "../errors.js";
import type { BuildRequest, BuildResult } from "../request/index.js";
import { ProgressBus, type ProgressEvent, type ProgressSink } from "../progress/index.js";
import { ownerTag } from "../process/index.js";
import {
  RECORD_VERSION,
  buildName,
  recordRequest,
  recordResult,
  type BuildRecord,
} from "./record.js";
import { EVENTS_FILE, HistoryStore, keepFromEnv } from "./store.js";
import { countSteps, foldSteps } from "./steps.js";

/** A step's output kept in full up to this size, as BuildKit's default step log limit. */
export const STEP_LOG_LIMIT = 2 << 20;
/** What is kept of the output past the limit: its end, where failures show. */
const CLIPPED_TAIL = 16 << 10;
/** Dockerfiles larger than this are recorded by name only. */
const DOCKERFILE_LIMIT = 1 << 20;

interface LogBudget {
  written: number;
  /** the end of the output past the limit */
  tail?: string;
  skipped: number;
  stream: 1 | 2;
}

export class HistoryRecorder implements ProgressSink {
  readonly #store: HistoryStore;
  #record: BuildRecord;
  #fd: number | undefined;
  readonly #events: ProgressEvent[] = [];
  readonly #budgets = new Map<string, LogBudget>();

  private constructor(store: HistoryStore, record: BuildRecord, fd: number) {
    this.#store = store;
    this.#record = record;
    this.#fd = fd;
  }

  static async start(store: HistoryStore, record: BuildRecord): Promise<HistoryRecorder> {
    await store.create(record);
    const fd = openSync(join(store.recordDir(record.ref), EVENTS_FILE), "a");
    return new HistoryRecorder(store, record, fd);
  }

  get ref(): string {
    return this.#record.ref;
  }

  write(ev: ProgressEvent): void {
    if (this.#fd === undefined) return;
    if (ev.type === "log") {
      this.#log(ev);
      return;
    }
    this.#append(ev);
    if (ev.type === "vertex" && (ev.completed !== undefined || ev.error !== undefined)) {
      this.#flushClipped(ev.id, ev.completed ?? Date.now());
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Ends the record: completed with `result`, or failed (canceled) with `error`. */
  async finish(outcome: { result: BuildResult } | { error: unknown }): Promise<void> {
    if (this.#fd === undefined) return;
    const now = Date.now();
    for (const id of this.#budgets.keys()) this.#flushClipped(id, now);
    closeSync(this.#fd);
    this.#fd = undefined;
    const steps = countSteps(foldSteps(this.#events));
    if ("result" in outcome) {
      this.#record = {
        ...this.#record,
        status: "completed",
        completedAt: now,
        steps,
        result: recordResult(outcome.result),
      };
    } else {
      const e = outcome.error;
      const code = isKilnError(e) ? e.code : "E_INTERNAL";
      this.#record = {
        ...this.#record,
        status: code === "E_CANCELED" ? "canceled" : "error",
        completedAt: now,
        steps,
        error: {
          code,
          message: messageOf(e),
          ...(isKilnError(e) && e.hint !== undefined ? { hint: e.hint } : {}),
        },
      };
    }
    await this.#store.update(this.#record);
  }

  #append(ev: ProgressEvent): void {
    // kept in memory without log data, for the step counts at the end
    if (ev.type !== "log") this.#events.push(ev);
    try {
      writeSync(this.#fd!, `${JSON.stringify(ev)}\n`);
    } catch {
      // a full disk stops the recording, never the build
      closeSync(this.#fd!);
      this.#fd = undefined;
    }
  }

  #log(ev: Extract<ProgressEvent, { type: "log" }>): void {
    let b = this.#budgets.get(ev.vertex);
    if (!b) this.#budgets.set(ev.vertex, (b = { written: 0, skipped: 0, stream: ev.stream }));
    const size = Buffer.byteLength(ev.data);
    if (b.tail === undefined && b.written + size <= STEP_LOG_LIMIT) {
      b.written += size;
      this.#append(ev);
      return;
    }
    if (b.tail === undefined) {
      b.tail = "";
      this.#append({
        ...ev,
        data: `\n[output clipped, log limit ${STEP_LOG_LIMIT >> 20}MiB reached]\n`,
      });
    }
    b.stream = ev.stream;
    b.tail += ev.data;
    if (b.tail.length > 2 * CLIPPED_TAIL) {
      b.skipped += b.tail.length - CLIPPED_TAIL;
      b.tail = b.tail.slice(-CLIPPED_TAIL);
    }
  }

  /** Writes the end of a step's clipped output, once the step is over. */
  #flushClipped(vertex: string, timestamp: number): void {
    const b = this.#budgets.get(vertex);
    if (b?.tail === undefined) return;
    this.#budgets.delete(vertex);
    let tail = b.tail;
    let skipped = b.skipped;
    if (tail.length > CLIPPED_TAIL) {
      skipped += tail.length - CLIPPED_TAIL;
      tail = tail.slice(-CLIPPED_TAIL);
    }
    const cut = tail.indexOf("\n");
    if (skipped > 0 && cut >= 0) tail = tail.slice(cut + 1);
    this.#append({
      type: "log",
      vertex,
      stream: b.stream,
      timestamp,
      data: `[the last lines of the output follow]\n${tail}`,
    });
  }
}

export interface RecordBuildOptions {
  /** kiln's state directory */
  root: string;
  ref: string;
  request: BuildRequest;
  /** where the build's progress goes besides history */
  progress: ProgressSink;
  /** the builder a remote build runs on */
  builder?: string;
  /** the kilnd node recording its part of a build */
  node?: string;
}

/**
 * Runs `build` with its progress also recorded in the state dir's history, and finishes the
 * record with the outcome. History never fails a build: when it cannot record, it says so in a
 * warning and the build goes on unrecorded.
 */
export async function recordBuild(
  opts: RecordBuildOptions,
  build: (progress: ProgressSink) => Promise<BuildResult>,
): Promise<BuildResult> {
  const store = HistoryStore.at(opts.root);
  let recorder: HistoryRecorder | undefined;
  let keep = 0;
  try {
    keep = keepFromEnv();
    if (keep > 0) recorder = await HistoryRecorder.start(store, await newRecord(opts));
  } catch (e) {
    opts.progress.write({
      type: "warning",
      message: `build history: not recording this build: ${messageOf(e)}`,
    });
  }
  if (recorder === undefined) return build(opts.progress);
  // Room for this one (retention counts the finished records), made while the build runs:
  // listing and removing records is no part of the build. A failure only costs a warning.
  const pruning = store.prune({ keep: keep - 1 }).then(
    () => undefined,
    (e: unknown) => {
      opts.progress.write({
        type: "warning",
        message: `build history: cannot remove old records: ${messageOf(e)}`,
      });
    },
  );
  // history first: whatever the user saw is already on disk, however the process ends
  const sink = new ProgressBus([recorder, opts.progress]);
  let result: BuildResult;
  try {
    result = await build(sink);
  } catch (e) {
    await pruning;
    await recorder.finish({ error: e }).catch(() => undefined);
    throw e;
  }
  await pruning;
  await recorder.finish({ result }).catch((e: unknown) => {
    opts.progress.write({
      type: "warning",
      message: `build history: cannot finish record ${opts.ref}: ${messageOf(e)}`,
    });
  });
  return result;
}

async function newRecord(opts: RecordBuildOptions): Promise<BuildRecord> {
  const request = recordRequest(opts.request);
  const path = resolve(opts.request.contextDir, opts.request.dockerfile);
  const content = await readFile(path, "utf8").then(
    (t) => (Buffer.byteLength(t) <= DOCKERFILE_LIMIT ? t : undefined),
    () => undefined,
  );
  return {
    version: RECORD_VERSION,
    ref: opts.ref,
    name: buildName(request),
    status: "running",
    createdAt: Date.now(),
    owner: await ownerTag(),
    host: hostname(),
    ...(opts.builder === undefined ? {} : { builder: opts.builder }),
    ...(opts.node === undefined ? {} : { node: opts.node }),
    request,
    dockerfile: { name: basename(path), ...(content === undefined ? {} : { content }) },
  };
}
