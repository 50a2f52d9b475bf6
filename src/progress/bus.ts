import type { ProgressEvent, ProgressSink, VertexEvent } from "./events.js";

/** Fans each event out to several sinks (e.g. the terminal renderer and a build-history file). */
export class ProgressBus implements ProgressSink {
  readonly #sinks: ProgressSink[];
  #closed = false;

  constructor(sinks: Iterable<ProgressSink> = []) {
    this.#sinks = [...sinks];
  }

  add(sink: ProgressSink): void {
    this.#sinks.push(sink);
  }

  write(ev: ProgressEvent): void {
    if (this.#closed) return;
    for (const s of this.#sinks) s.write(ev);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#sinks.map((s) => s.close()));
  }
}

/** Keeps every event in memory, so tests can assert on what a component reported. */
export class RecordingSink implements ProgressSink {
  readonly events: ProgressEvent[] = [];
  closed = false;

  write(ev: ProgressEvent): void {
    if (this.closed) return;
    // A copy: producers may reuse and mutate their event objects.
    this.events.push(structuredClone(ev));
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  ofType<T extends ProgressEvent["type"]>(type: T): Extract<ProgressEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<ProgressEvent, { type: T }> => e.type === type);
  }

  /** The state of each vertex after all its updates, in order of first appearance. */
  vertices(): VertexEvent[] {
    const byId = new Map<string, VertexEvent>();
    for (const ev of this.ofType("vertex")) byId.set(ev.id, mergeVertex(byId.get(ev.id), ev));
    return [...byId.values()];
  }
}

/** Applies a vertex update: present fields replace, absent ones keep their previous value. */
export function mergeVertex(prev: VertexEvent | undefined, next: VertexEvent): VertexEvent {
  if (prev === undefined) return { ...next };
  const out: VertexEvent = { ...prev };
  for (const [k, v] of Object.entries(next)) {
    if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}
