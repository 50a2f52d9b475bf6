/**
 * The progress event model, after BuildKit's SolveStatus: the solver emits these, renderers draw
 * them, and the daemon streams them as NDJSON (one event per line, exactly these objects).
 * All times are milliseconds since the Unix epoch. docs/progress.md describes the semantics and
 * docs/progress-event.schema.json the wire shape.
 */

/**
 * One step of the build graph. A vertex is announced (no `started`), then started, then finishes
 * with `completed`, `cached` or `error`. Later events for the same `id` update the earlier ones:
 * fields that are present replace, fields that are absent keep their value.
 */
export interface VertexEvent {
  type: "vertex";
  /** The op digest. */
  id: string;
  /** e.g. "[linux/arm64 build 3/5] RUN make" */
  name: string;
  platform?: string;
  started?: number;
  completed?: number;
  cached?: boolean;
  error?: string;
  /** The vertex ran under a user-mode emulator (qemu). */
  emulated?: boolean;
  /** The builder node that ran the vertex, in a multi-node build. */
  node?: string;
  /** Digests of the vertices this one depends on. */
  inputs?: string[];
}

/** Output of a running vertex; `data` may hold several lines or part of one. */
export interface LogEvent {
  type: "log";
  vertex: string;
  stream: 1 | 2;
  data: string;
  timestamp: number;
}

/** A byte transfer (pull, push, context upload) inside a vertex; repeated events update it. */
export interface StatusEvent {
  type: "status";
  vertex: string;
  /** e.g. "pulling sha256:…"; unique within the vertex. */
  id: string;
  /** Display name; `id` is shown when absent. */
  name?: string;
  current: number;
  total?: number;
  started?: number;
  completed?: number;
}

export interface WarningEvent {
  type: "warning";
  vertex?: string;
  message: string;
  detail?: string;
  location?: { file: string; line: number };
}

export interface PlatformSummary {
  platform: string;
  durationMs: number;
  /** Part of `durationMs` spent in emulated vertices. */
  emulatedMs: number;
  /** Vertices of this platform answered from the cache, of `total`. */
  cached: number;
  total: number;
  /** The platform's image manifest digest, when an image was produced. */
  digest?: string;
}

/** The end-of-build summary. */
export interface SummaryEvent {
  type: "summary";
  platforms: PlatformSummary[];
  durationMs: number;
}

export type ProgressEvent = VertexEvent | LogEvent | StatusEvent | WarningEvent | SummaryEvent;

/**
 * Where progress events go. `write` never blocks the producer; `close` flushes the final state
 * and resolves once it is written. Events written after `close` are ignored: a late event from a
 * cancelled step must not fail a build that is already over.
 */
export interface ProgressSink {
  write(ev: ProgressEvent): void;
  close(): Promise<void>;
}
