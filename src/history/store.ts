/**
 * Build records on disk, under the state dir:
 *
 *   <root>/history/<ref>/record.json    the record (replaced atomically: temp file, fsync, rename)
 *   <root>/history/<ref>/events.jsonl   the build's progress events, one per line, appended as
 *                                       they happen, so a build killed mid-way leaves them behind
 *
 * A record directory appears whole (it is assembled under a temporary name and renamed). A
 * record still marked running whose owner process is gone was cut off; it reads as canceled,
 * with the step counts of the events it left. A torn last event line is skipped, never fatal.
 */
import { createReadStream, readFileSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { KilnError } from "../errors.js";
import type { ProgressEvent } from "../progress/index.js";
import { isOwnerAlive } from "../process/index.js";
import { REF_PATTERN, type BuildRecord } from "./record.js";
import { countSteps, foldSteps } from "./steps.js";
import { syncDir } from "../durable.js";

export const RECORD_FILE = "record.json";
export const EVENTS_FILE = "events.jsonl";
/** Builds kept when KILN_HISTORY_KEEP does not say otherwise. */
export const DEFAULT_KEEP = 50;
/** Half-assembled record directories older than this are debris of a crash. */
const STALE_TEMP_MS = 3600_000;
const TEMP_PREFIX = ".tmp-";

/** The number of records to keep: KILN_HISTORY_KEEP (0 records nothing), else DEFAULT_KEEP. */
export function keepFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.KILN_HISTORY_KEEP;
  if (v === undefined || v === "") return DEFAULT_KEEP;
  if (!/^\d+$/.test(v)) {
    throw new KilnError("E_FLAG", `invalid KILN_HISTORY_KEEP ${JSON.stringify(v)}`, {
      hint: "give the number of build records to keep (0 records none)",
    });
  }
  return Number(v);
}

/** Writes `file` so that readers see the old or the new content, never a torn one. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await syncDir(join(file, ".."));
}

export interface PruneOptions {
  /** keep this many of the newest finished records */
  keep?: number;
  /** remove finished records created longer ago than this */
  olderThanMs?: number;
  /** remove every finished record */
  all?: boolean;
}

export class HistoryStore {
  constructor(readonly dir: string) {}

  static at(stateRoot: string): HistoryStore {
    return new HistoryStore(join(stateRoot, "history"));
  }

  recordDir(ref: string): string {
    if (!REF_PATTERN.test(ref)) {
      throw new KilnError("E_HISTORY_REF", `invalid build reference ${JSON.stringify(ref)}`, {
        hint: "use a ref from `kiln history ls`, or ^N for the N-th most recent build",
      });
    }
    return join(this.dir, ref);
  }

  /** Creates the record directory (record.json and the events file) in one rename. */
  async create(record: BuildRecord, events: readonly ProgressEvent[] = []): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const dest = this.recordDir(record.ref);
    const tmp = join(this.dir, `${TEMP_PREFIX}${record.ref}`);
    await mkdir(tmp, { mode: 0o700 });
    try {
      await writeFile(
        join(tmp, EVENTS_FILE),
        events.map((e) => `${JSON.stringify(e)}\n`).join(""),
        {
          mode: 0o600,
        },
      );
      await writeFileAtomic(join(tmp, RECORD_FILE), JSON.stringify(record));
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      if (
        (e as NodeJS.ErrnoException).code === "ENOTEMPTY" ||
        (e as NodeJS.ErrnoException).code === "EEXIST"
      ) {
        throw new KilnError("E_HISTORY_EXISTS", `build record ${record.ref} already exists`, {
          hint: `remove it first: kiln history rm ${record.ref}`,
        });
      }
      throw e;
    }
    await syncDir(this.dir);
  }

  async update(record: BuildRecord): Promise<void> {
    await writeFileAtomic(join(this.recordDir(record.ref), RECORD_FILE), JSON.stringify(record));
  }

  /** Every readable record, newest first, with cut-off builds shown as canceled. */
  async list(): Promise<BuildRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    const records: BuildRecord[] = [];
    for (const name of names) {
      if (!REF_PATTERN.test(name)) continue;
      const r = await this.#read(name);
      if (r) records.push(r);
    }
    return records.sort((a, b) => b.createdAt - a.createdAt || (a.ref < b.ref ? -1 : 1));
  }

  /**
   * The record `ref` names: a ref, a unique prefix of one, `builder/node/ref` (as in
   * --metadata-file), `^N` (the N-th most recent, `^0` the last), or the last when absent.
   */
  async resolve(ref: string | undefined): Promise<BuildRecord> {
    const want = ref ?? "^0";
    const offset = /^\^(\d+)$/.exec(want);
    const records = await this.list();
    if (offset) {
      const r = records[Number(offset[1])];
      if (r) return r;
      throw new KilnError(
        "E_HISTORY_NOT_FOUND",
        records.length === 0
          ? "no build records yet"
          : `no build record ${want}: there are ${records.length}`,
        { hint: "build something first, or see `kiln history ls`" },
      );
    }
    const id = want.slice(want.lastIndexOf("/") + 1);
    const exact = records.find((r) => r.ref === id);
    if (exact) return exact;
    const matches = id === "" ? [] : records.filter((r) => r.ref.startsWith(id));
    if (matches.length === 1) return matches[0]!;
    throw new KilnError(
      "E_HISTORY_NOT_FOUND",
      matches.length > 1
        ? `build reference ${want} is ambiguous (${matches.length} records)`
        : `no build record ${want}`,
      { hint: "see `kiln history ls` for the refs" },
    );
  }

  /** The record's progress events, in order; a torn or damaged line is skipped. */
  async *events(ref: string): AsyncGenerator<ProgressEvent> {
    const file = join(this.recordDir(ref), EVENTS_FILE);
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) {
      const ev = parseEvent(line);
      if (ev) yield ev;
    }
  }

  async allEvents(ref: string): Promise<ProgressEvent[]> {
    const out: ProgressEvent[] = [];
    for await (const ev of this.events(ref)) out.push(ev);
    return out;
  }

  /** Removes a record; a build still running keeps its record. */
  async remove(ref: string): Promise<void> {
    const dir = this.recordDir(ref);
    const r = await this.#read(ref);
    if (r?.status === "running") {
      throw new KilnError("E_HISTORY_RUNNING", `build ${ref} is still running`, {
        hint: "wait for it to finish (or cancel it) before removing its record",
      });
    }
    // renamed away first, so a reader never sees half a record
    const gone = join(this.dir, `${TEMP_PREFIX}rm-${ref}-${process.pid}`);
    try {
      await rename(dir, gone);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    await rm(gone, { recursive: true, force: true });
  }

  /**
   * Removes finished records beyond the newest `keep`, older than `olderThanMs`, or all of
   * them; records of running builds stay. Returns the refs removed.
   */
  async prune(opts: PruneOptions, now = Date.now()): Promise<string[]> {
    const records = await this.list();
    const removed: string[] = [];
    let finished = 0;
    for (const r of records) {
      if (r.status === "running") continue;
      finished++;
      const drop =
        opts.all === true ||
        (opts.keep !== undefined && finished > opts.keep) ||
        (opts.olderThanMs !== undefined && now - r.createdAt > opts.olderThanMs);
      if (!drop) continue;
      await this.remove(r.ref).catch((e: unknown) => {
        if (!(e instanceof KilnError)) throw e;
      });
      removed.push(r.ref);
    }
    await this.#sweepTemp(now);
    return removed;
  }

  async #sweepTemp(now: number): Promise<void> {
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const p = join(this.dir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_TEMP_MS) await rm(p, { recursive: true, force: true });
    }
  }

  /**
   * One record as stored, or as it must be read when its build was cut off. Read synchronously:
   * a record is a few KB, and every build lists them all (retention) before it starts.
   */
  async #read(ref: string): Promise<BuildRecord | undefined> {
    let record: BuildRecord;
    try {
      record = JSON.parse(
        readFileSync(join(this.recordDir(ref), RECORD_FILE), "utf8"),
      ) as BuildRecord;
    } catch {
      // removed meanwhile, or not a record: record.json is only ever replaced whole
      return undefined;
    }
    if (record.status !== "running" || (await isOwnerAlive(record.owner))) return record;
    return this.#cutOff(record);
  }

  /**
   * A build whose process died without finishing its record (SIGKILL, power loss): canceled,
   * with the steps its events show. Written back, so this is worked out once.
   */
  async #cutOff(record: BuildRecord): Promise<BuildRecord> {
    const events = await this.allEvents(record.ref).catch(() => [] as ProgressEvent[]);
    let last = record.createdAt;
    for (const ev of events) {
      const t =
        ev.type === "vertex"
          ? (ev.completed ?? ev.started)
          : ev.type === "log"
            ? ev.timestamp
            : undefined;
      if (t !== undefined && t > last) last = t;
    }
    const done: BuildRecord = {
      ...record,
      status: "canceled",
      completedAt: last,
      steps: countSteps(foldSteps(events)),
      error: {
        code: "E_INTERRUPTED",
        message: `the build's process (${record.owner.split("-")[0]}) ended before the build did`,
        hint: "it was killed, or the machine stopped; the events it recorded are kept",
      },
    };
    await this.update(done).catch(() => undefined);
    return done;
  }
}

function parseEvent(line: string): ProgressEvent | undefined {
  if (line === "") return undefined;
  try {
    const ev = JSON.parse(line) as ProgressEvent;
    return typeof ev === "object" && ev !== null && typeof ev.type === "string" ? ev : undefined;
  } catch {
    return undefined;
  }
}
