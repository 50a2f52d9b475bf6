/**
 * One build record as one file (`kiln history export` / `import`), to attach to a bug report:
 * a JSON document holding the record and its events. Imported records are finished records:
 * one exported mid-build reads as canceled, and its owner is never taken for a local process.
 */
import type { Writable } from "node:stream";
import { once } from "node:events";
import { KilnError, messageOf } from "../errors.js";
import type { ProgressEvent } from "../progress/index.js";
import { REF_PATTERN, type BuildRecord } from "./record.js";
import type { HistoryStore } from "./store.js";
import { countSteps, foldSteps } from "./steps.js";

const BUNDLE_KIND = "kiln-build-record";
const BUNDLE_VERSION = 1;
/** The owner of imported records: not a "<pid>-<start>" tag, so never alive. */
const IMPORTED_OWNER = "imported";

async function put(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, "drain");
}

/** Streams the bundle of `record` to `out`, event by event. */
export async function writeBundle(
  store: HistoryStore,
  record: BuildRecord,
  out: Writable,
): Promise<void> {
  await put(
    out,
    `{"kind":${JSON.stringify(BUNDLE_KIND)},"version":${BUNDLE_VERSION},"record":${JSON.stringify(record)},"events":[`,
  );
  let first = true;
  for await (const ev of store.events(record.ref)) {
    await put(out, `${first ? "\n" : ",\n"}${JSON.stringify(ev)}`);
    first = false;
  }
  await put(out, "\n]}\n");
}

function invalid(source: string, why: string): KilnError {
  return new KilnError("E_HISTORY_IMPORT", `${source} is not a kiln build record: ${why}`, {
    hint: "import a file written by `kiln history export`",
  });
}

/** Adds the bundle in `text` to `store`; returns the record as stored. */
export async function importBundle(
  store: HistoryStore,
  text: string,
  source: string,
): Promise<BuildRecord> {
  let doc: { kind?: unknown; version?: unknown; record?: unknown; events?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (e) {
    throw invalid(source, messageOf(e));
  }
  if (doc.kind !== BUNDLE_KIND) throw invalid(source, 'no kind "kiln-build-record"');
  if (doc.version !== BUNDLE_VERSION) {
    throw invalid(source, `version ${String(doc.version)}, this kiln reads ${BUNDLE_VERSION}`);
  }
  const r = doc.record as Partial<BuildRecord> | undefined;
  if (typeof r !== "object" || r === null) throw invalid(source, "no record");
  if (typeof r.ref !== "string" || !REF_PATTERN.test(r.ref)) throw invalid(source, "bad ref");
  if (typeof r.createdAt !== "number" || typeof r.name !== "string") {
    throw invalid(source, "no name or creation time");
  }
  if (typeof r.request !== "object" || r.request === null) throw invalid(source, "no request");
  if (!Array.isArray(doc.events)) throw invalid(source, "no events");
  const events = (doc.events as unknown[]).filter(
    (e): e is ProgressEvent =>
      typeof e === "object" && e !== null && typeof (e as { type?: unknown }).type === "string",
  );
  const record = r as BuildRecord;
  const imported: BuildRecord = {
    ...record,
    owner: IMPORTED_OWNER,
    importedAt: Date.now(),
    ...(record.status === "running"
      ? {
          status: "canceled",
          steps: countSteps(foldSteps(events)),
          error: { code: "E_INTERRUPTED", message: "the build was still running when exported" },
        }
      : {}),
  };
  await store.create(imported, events);
  return imported;
}
