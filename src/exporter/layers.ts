/**
 * The layer blobs of one export, made as early as possible: a built layer can be diffed and
 * compressed as soon as its step ends, while later steps still run (`prepare`), and the image
 * assembly then finds it done (`blobOf`). Each blob is compressed straight into the content
 * store, hashed on both sides as it is written. Pulled layers recompressed to another format
 * are shared by diffID. Built layers are compressed in one pass; in a multi-platform build, a
 * layer that looks like one made before (same tar headers) is hashed first and shares that
 * blob when it is the same (see `built`).
 */
import {
  compressLayerTo,
  decompressStream,
  diffDigest,
  diffOf,
  diffSignature,
} from "../archive/index.js";
import type { BlobRecord, BuildCache, LayerRecord } from "../cache/index.js";
import type { ContentStore } from "../content/index.js";
import { KilnError } from "../errors.js";
import { Lanes } from "../lanes.js";
import { layerCompression, type Compression } from "../oci/index.js";
import type { Snapshotter } from "../snapshot/index.js";

export interface LayerBlobDeps {
  content: ContentStore;
  cache: BuildCache;
  snapshots: Snapshotter;
}

export interface LayerBlobOptions {
  compression: Compression;
  compressionLevel?: number;
  /** recompress pulled layers that use another compression too (else they go out as pulled) */
  forceCompression?: boolean;
  /** SOURCE_DATE_EPOCH (seconds): clamps built layers' mtimes */
  epoch?: number;
  /** how many layers are compressed at once */
  parallelism?: number;
  /** several platforms are built: look for identical layers among them (see `built`) */
  twins?: boolean;
}

/** The cache's name for a blob made with these options. */
function blobKey(opts: LayerBlobOptions, withEpoch: boolean): string {
  const level = opts.compressionLevel === undefined ? "" : `-l${opts.compressionLevel}`;
  const epoch = !withEpoch || opts.epoch === undefined ? "" : `-e${opts.epoch}`;
  // d2: layers diffed against their lower view (older blobs kept unchanged entries)
  return `${opts.compression}${level}${epoch}-d2`;
}

/** Somewhere a blob's bytes also go while they are written (PushAhead.whileWritten). */
export interface BlobTee {
  /** The blob's bytes, handed on unchanged. */
  through(blob: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array>;
  /** The finished blob, or undefined when making it failed. */
  finish(b: BlobRecord | undefined): void;
}

export class LayerBlobs {
  private readonly bySnapshot = new Map<string, Promise<BlobRecord>>();
  private readonly byDiffID = new Map<string, Promise<BlobRecord>>();
  /** built layers' blobs by blob key and header signature (see `built`) */
  private readonly bySignature = new Map<string, Promise<BlobRecord>>();
  private readonly lanes: Lanes;
  private readonly listeners: ((blob: BlobRecord) => void)[] = [];
  private openTee: (() => BlobTee) | undefined;

  constructor(
    private readonly deps: LayerBlobDeps,
    private readonly opts: LayerBlobOptions,
  ) {
    this.lanes = new Lanes(opts.parallelism ?? 2);
  }

  /** Calls `fn` with each blob as it becomes ready (e.g. to push it while the build goes on). */
  onBlob(fn: (blob: BlobRecord) => void): void {
    this.listeners.push(fn);
  }

  /** Sends the bytes of each blob this makes to a tee too, as they are written. */
  teeWith(open: () => BlobTee): void {
    this.openTee = open;
  }

  /** Starts making a layer's blob in the background; its failure surfaces from `blobOf`. */
  prepare(layer: LayerRecord): void {
    this.blobOf(layer).catch(() => undefined);
  }

  /** The blob of a layer: made once per snapshot, whoever asks first. */
  blobOf(layer: LayerRecord): Promise<BlobRecord> {
    let p = this.bySnapshot.get(layer.snapshot);
    if (!p) {
      p = this.make(layer).then((blob) => {
        for (const fn of this.listeners) fn(blob);
        return blob;
      });
      this.bySnapshot.set(layer.snapshot, p);
    }
    return p;
  }

  /** Waits until no blob is being written (a failed build must not leave writers behind). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.bySnapshot.values(), ...this.byDiffID.values()]);
  }

  private async make(layer: LayerRecord): Promise<BlobRecord> {
    // an imported cache layer not unpacked goes out as it is too (the engine unpacks it otherwise)
    const pulled = layer.blob && (!layer.producer || layer.remote) ? layer.blob : undefined;
    // a pulled layer is exported exactly as pulled unless another compression is forced on it
    if (
      pulled &&
      !(this.opts.forceCompression && layerCompression(pulled.mediaType) !== this.opts.compression)
    )
      return pulled;
    // pulled content never changes with the epoch; built layers clamp their mtimes to it
    const key = blobKey(this.opts, !pulled);
    const known = await this.deps.cache.blobFor(layer.snapshot, key);
    if (known && (await this.deps.content.has(known.digest))) return known;
    let blob: Promise<BlobRecord> | undefined;
    if (pulled) {
      const same = `${key} ${pulled.diffID}`;
      blob = this.byDiffID.get(same);
      if (!blob) {
        const tar = () => ({
          chunks: decompressStream(
            this.deps.content.openRead(pulled.digest),
            pulled.mediaType,
            pulled.size,
          ),
          transient: false,
        });
        blob = this.lanes.run(() => this.compress(tar, pulled.diffID));
        this.byDiffID.set(same, blob);
      }
    } else {
      blob = this.built(layer.snapshot, key);
    }
    const made = await blob;
    await this.deps.cache.recordBlob(layer.snapshot, key, made);
    return made;
  }

  /**
   * A built layer's blob. In a multi-platform build the same step often makes the same layer
   * for each platform (a COPY of the context into the same directories, in the same second):
   * a layer whose header signature (names, sizes, modes, times; no content read) matches one
   * made before is hashed, and when its diffID matches too it shares that blob (one
   * compression, one upload). Any other layer is compressed in one pass.
   */
  private async built(snapshot: string, key: string): Promise<BlobRecord> {
    const walk = this.opts.epoch === undefined ? {} : { mtime: this.opts.epoch };
    const diff = await this.deps.snapshots.layerDiff(snapshot);
    // the compressor copies what it keeps: the walk reads every file through one buffer
    const tar = () => ({ chunks: diffOf(diff, walk, true), transient: true });
    if (!this.opts.twins) return this.lanes.run(() => this.compress(tar, undefined));
    const signature = `${key} ${await diffSignature(diff, walk)}`;
    const twin = this.bySignature.get(signature);
    if (twin === undefined) {
      const made = this.lanes.run(() => this.compress(tar, undefined));
      this.bySignature.set(signature, made);
      return made;
    }
    const theirs = await twin.catch(() => undefined);
    if (theirs !== undefined && (await this.deps.content.has(theirs.digest))) {
      const { digest: diffID } = await this.lanes.run(() => diffDigest(diff, walk));
      if (diffID === theirs.diffID) return theirs;
    }
    return this.lanes.run(() => this.compress(tar, undefined));
  }

  private async compress(
    tar: () => { chunks: AsyncIterable<Uint8Array>; transient: boolean },
    expectedDiffID: string | undefined,
  ): Promise<BlobRecord> {
    const { chunks, transient } = tar();
    const tee = this.openTee?.();
    try {
      const c = await compressLayerTo(
        chunks,
        (blob) => this.deps.content.ingest(tee ? tee.through(blob) : blob),
        {
          compression: this.opts.compression,
          level: this.opts.compressionLevel,
          // a program writing the blob file itself would keep its bytes from the tee
          writeFile: tee ? undefined : (fill) => this.deps.content.ingestWritten(fill),
          transient,
        },
      );
      if (expectedDiffID !== undefined && c.diffID !== expectedDiffID) {
        throw new KilnError(
          "E_LAYER_COMPRESS",
          `a layer changed while it was exported (${expectedDiffID} → ${c.diffID})`,
          {
            hint: "remove kiln's content store and build again (kiln prune --all)",
          },
        );
      }
      const blob = { digest: c.digest, size: c.size, mediaType: c.mediaType, diffID: c.diffID };
      tee?.finish(blob);
      return blob;
    } catch (e) {
      tee?.finish(undefined);
      throw e;
    }
  }
}
