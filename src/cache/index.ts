/**
 * Persistent build cache: solver results keyed by cache key, and the compressed blob made
 * from each built layer (so exporting again never recompresses). The records live in the
 * state dir's metadata database (one transaction each), so several kiln processes share them
 * safely; a record is a hint that is checked before use, never trusted blindly.
 */
import type { MetadataStore } from "../metadata/index.js";
import type { ResultCache } from "../solver/index.js";

/** A compressed layer blob as it sits in the content store. */
export interface BlobRecord {
  digest: string;
  size: number;
  mediaType: string;
  diffID: string;
}

/** One layer of a root filesystem: a committed snapshot, and its blob when known. */
export interface LayerRecord {
  snapshot: string;
  blob?: BlobRecord;
  /** digest of the vertex whose step created this layer (built layers only) */
  producer?: string;
  /** when the step made it (ISO 8601): the image history's timestamp */
  created?: string;
  /**
   * imported from a remote cache and not unpacked yet: `blob` is the layer as it is (exported
   * untouched, pushed by mounting it from the cache's repository), `snapshot` does not exist
   */
  remote?: boolean;
}

/** The result of every op: a root filesystem as a stack of layers, bottom first. */
export interface FsResult {
  layers: LayerRecord[];
}

/** A result as its record holds it: with the content key it also has (see the solver). */
type StoredResult = FsResult & { contentKey?: string };

/** A result record as `kiln du`/`prune` see it. */
export interface ResultEntry {
  key: string;
  /** undefined when the record does not parse (a leftover to remove) */
  result: FsResult | undefined;
  created: Date;
  lastUsed: Date;
}

/** A layer-blob record: the blob made from `snapshot` with a compression key. */
export interface BlobEntry {
  snapshot: string;
  compression: string;
  blob: BlobRecord | undefined;
  created: Date;
  lastUsed: Date;
}

/** A record's JSON, or undefined when there is none or it does not parse (then: a miss). */
function parse(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function asResult(r: unknown): FsResult | undefined {
  return typeof r === "object" && r !== null && Array.isArray((r as FsResult).layers)
    ? (r as FsResult)
    : undefined;
}

function asBlob(r: unknown): BlobRecord | undefined {
  return typeof r === "object" && r !== null && typeof (r as BlobRecord).digest === "string"
    ? (r as BlobRecord)
    : undefined;
}

export class BuildCache implements ResultCache<FsResult> {
  constructor(
    private readonly records: MetadataStore,
    private readonly snapshotExists: (id: string) => Promise<boolean>,
  ) {}

  async load(key: string): Promise<FsResult | undefined> {
    const r = asResult(parse(this.records.useResult(key)));
    if (!r) return undefined;
    for (const l of r.layers) {
      // a pruned or half-written snapshot makes the record useless, never wrong
      if (!(await this.snapshotExists(l.snapshot))) return undefined;
    }
    return { layers: r.layers.map((l) => this.withBlob(l)) };
  }

  save(key: string, result: FsResult, contentKey?: string): Promise<void> {
    const record: StoredResult = contentKey === undefined ? result : { ...result, contentKey };
    this.records.putResult(key, JSON.stringify(record));
    return Promise.resolve();
  }

  contentKeyOf(key: string): Promise<string | undefined> {
    // a lookup beside load (or for an export), not a use of the result
    const r = parse(this.records.peekResult(key));
    const contentKey = (r as StoredResult | undefined)?.contentKey;
    return Promise.resolve(typeof contentKey === "string" ? contentKey : undefined);
  }

  /** The blob made from a built snapshot with the given compression, if any. */
  blobFor(snapshot: string, compression: string): Promise<BlobRecord | undefined> {
    return Promise.resolve(this.#blobFor(snapshot, compression));
  }

  #blobFor(snapshot: string, compression: string): BlobRecord | undefined {
    return asBlob(parse(this.records.useLayerBlob(snapshot, compression)));
  }

  recordBlob(snapshot: string, compression: string, blob: BlobRecord): Promise<void> {
    this.records.putLayerBlob(snapshot, compression, JSON.stringify(blob));
    return Promise.resolve();
  }

  private withBlob(l: LayerRecord): LayerRecord {
    if (l.blob) return l;
    const blob = this.#blobFor(l.snapshot, "gzip");
    return blob ? { ...l, blob } : l;
  }

  /** Every result record, parsed (for `kiln du`/`prune`). */
  results(): ResultEntry[] {
    return this.records.results().map((r) => ({
      key: r.key,
      result: asResult(parse(r.value)),
      created: new Date(r.created),
      lastUsed: new Date(r.lastUsed),
    }));
  }

  /** Every layer-blob record, parsed (for `kiln du`/`prune`). */
  blobRecords(): BlobEntry[] {
    return this.records.layerBlobs().map((r) => ({
      snapshot: r.snapshot,
      compression: r.compression,
      blob: asBlob(parse(r.value)),
      created: new Date(r.created),
      lastUsed: new Date(r.lastUsed),
    }));
  }

  removeResult(key: string): void {
    this.records.deleteResult(key);
  }

  removeBlobRecord(snapshot: string, compression: string): void {
    this.records.deleteLayerBlob(snapshot, compression);
  }
}
