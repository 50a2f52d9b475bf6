/**
 * Persistent build cache: solver results keyed by cache key, and the compressed blob made
 * from each built layer (so exporting again never recompresses). Records are small JSON
 * files written atomically (temp file + rename), so a crash leaves either the old record or
 * the new one, and several kiln processes can share the directory.
 */
import { mkdir, readFile, readdir, rename, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
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

async function writeAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function readJSON<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch {
    // missing, or torn by a crash before rename made it visible: treat as a miss
    return undefined;
  }
}

/** Marks a record as just used (its mtime is its "last used" time for `kiln du`/`prune`). */
async function touch(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now).catch(() => undefined);
}

/** A result record file as `kiln du`/`prune` see it. */
export interface ResultFile {
  path: string;
  /** undefined when the file does not parse (a leftover to remove) */
  result: FsResult | undefined;
}

/** A layer-blob record file: the blob made from `snapshot` with a compression key. */
export interface BlobRecordFile {
  path: string;
  snapshot: string;
  compression: string;
  blob: BlobRecord | undefined;
}

function fileName(key: string): string {
  return key.replace(/^sha256:/, "") + ".json";
}

export class BuildCache implements ResultCache<FsResult> {
  private readonly resultsDir: string;
  private readonly blobsDir: string;

  private constructor(
    root: string,
    private readonly snapshotExists: (id: string) => Promise<boolean>,
  ) {
    this.resultsDir = join(root, "results");
    this.blobsDir = join(root, "layer-blobs");
  }

  static async open(
    root: string,
    snapshotExists: (id: string) => Promise<boolean>,
  ): Promise<BuildCache> {
    const c = new BuildCache(root, snapshotExists);
    await mkdir(c.resultsDir, { recursive: true });
    await mkdir(c.blobsDir, { recursive: true });
    return c;
  }

  async load(key: string): Promise<FsResult | undefined> {
    const r = await readJSON<FsResult>(join(this.resultsDir, fileName(key)));
    if (!r || !Array.isArray(r.layers)) return undefined;
    for (const l of r.layers) {
      // a pruned or half-written snapshot makes the record useless, never wrong
      if (!(await this.snapshotExists(l.snapshot))) return undefined;
    }
    await touch(join(this.resultsDir, fileName(key)));
    return { layers: await Promise.all(r.layers.map((l) => this.withBlob(l))) };
  }

  async save(key: string, result: FsResult): Promise<void> {
    await writeAtomic(join(this.resultsDir, fileName(key)), JSON.stringify(result));
  }

  /** The blob made from a built snapshot with the given compression, if any. */
  async blobFor(snapshot: string, compression: string): Promise<BlobRecord | undefined> {
    const path = join(this.blobsDir, `${snapshot}.${compression}.json`);
    const blob = await readJSON<BlobRecord>(path);
    if (blob) await touch(path);
    return blob;
  }

  async recordBlob(snapshot: string, compression: string, blob: BlobRecord): Promise<void> {
    await writeAtomic(join(this.blobsDir, `${snapshot}.${compression}.json`), JSON.stringify(blob));
  }

  private async withBlob(l: LayerRecord): Promise<LayerRecord> {
    if (l.blob) return l;
    const blob = await this.blobFor(l.snapshot, "gzip");
    return blob ? { ...l, blob } : l;
  }

  /** Every snapshot some cache record refers to (for prune). */
  async referencedSnapshots(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const f of await readdir(this.resultsDir)) {
      if (!f.endsWith(".json")) continue;
      const r = await readJSON<FsResult>(join(this.resultsDir, f));
      for (const l of r?.layers ?? []) out.add(l.snapshot);
    }
    return out;
  }

  /** The directories records live in (every other file there is a leftover of a crash). */
  get dirs(): { results: string; layerBlobs: string } {
    return { results: this.resultsDir, layerBlobs: this.blobsDir };
  }

  /** Every result record file, parsed (for `kiln du`/`prune`). */
  async resultFiles(): Promise<ResultFile[]> {
    const out: ResultFile[] = [];
    for (const f of await readdir(this.resultsDir)) {
      if (!f.endsWith(".json")) continue;
      const path = join(this.resultsDir, f);
      const r = await readJSON<FsResult>(path);
      out.push({ path, result: r && Array.isArray(r.layers) ? r : undefined });
    }
    return out;
  }

  /** Every layer-blob record file, parsed (for `kiln du`/`prune`). */
  async blobRecordFiles(): Promise<BlobRecordFile[]> {
    const out: BlobRecordFile[] = [];
    for (const f of await readdir(this.blobsDir)) {
      const m = /^(.+)\.([^.]+)\.json$/.exec(f);
      if (!m) continue;
      const path = join(this.blobsDir, f);
      out.push({
        path,
        snapshot: m[1]!,
        compression: m[2]!,
        blob: await readJSON<BlobRecord>(path),
      });
    }
    return out;
  }

  async clear(): Promise<void> {
    await rm(this.resultsDir, { recursive: true, force: true });
    await rm(this.blobsDir, { recursive: true, force: true });
    await mkdir(this.resultsDir, { recursive: true });
    await mkdir(this.blobsDir, { recursive: true });
  }
}
