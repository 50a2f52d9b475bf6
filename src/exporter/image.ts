/**
 * Image assembly: each platform's stack of layers plus its config becomes layer blobs, a
 * config blob and a manifest in the content store; all platforms become one index. Base
 * layers keep the blobs they were pulled as (never recompressed); built layers are diffed
 * and compressed once, and the blob is remembered for the next export.
 */
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { compressLayer } from "../archive/index.js";
import { diffUpperDir } from "../archive/index.js";
import type { BlobRecord, BuildCache, FsResult, LayerRecord } from "../cache/index.js";
import type { ContentStore } from "../content/index.js";
import { KilnError } from "../errors.js";
import {
  MediaType,
  appendManifests,
  emptyIndex,
  encodeJSON,
  fromPlatform,
  manifestFor,
  setAnnotations,
  type Compression,
  type Descriptor,
  type HistoryEntry,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from "../oci/index.js";
import type { Platform } from "../platform/types.js";
import type { Snapshotter } from "../snapshot/index.js";

export interface PlatformImage {
  platform: Platform;
  result: FsResult;
  /** the config as the frontend made it; rootfs.diff_ids are filled in here */
  config: ImageConfig;
  /** history entries inherited from the base image (kept as they are) */
  baseHistoryLength: number;
  /** per history entry after the base ones: the vertex whose layer it describes, if any */
  historyProducers: (string | undefined)[];
}

export interface AssembleOptions {
  compression: Compression;
  compressionLevel?: number;
  /** SOURCE_DATE_EPOCH (seconds): clamps layer mtimes and sets every timestamp */
  epoch?: number;
  ociMediaTypes: boolean;
  /** annotations for the index and for each manifest */
  indexAnnotations?: Record<string, string>;
  manifestAnnotations?: Record<string, string>;
  /** how many layers are compressed at once */
  parallelism?: number;
}

export interface AssembledPlatform {
  platform: Platform;
  manifest: ImageManifest;
  manifestDesc: Descriptor;
  configDesc: Descriptor;
}

export interface AssembledImage {
  platforms: AssembledPlatform[];
  index: ImageIndex;
  indexDesc: Descriptor;
}

export interface AssembleDeps {
  content: ContentStore;
  cache: BuildCache;
  snapshots: Snapshotter;
  tmpDir: string;
}

/** Runs `fn` over items with at most `limit` at once, keeping order in the result. */
async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return out;
}

function blobKey(opts: AssembleOptions): string {
  const level = opts.compressionLevel === undefined ? "" : `-l${opts.compressionLevel}`;
  const epoch = opts.epoch === undefined ? "" : `-e${opts.epoch}`;
  return `${opts.compression}${level}${epoch}`;
}

async function layerBlob(
  deps: AssembleDeps,
  layer: LayerRecord,
  opts: AssembleOptions,
): Promise<BlobRecord> {
  // a pulled layer is exported exactly as pulled, whatever compression was asked for
  if (layer.blob && !layer.producer) return layer.blob;
  const key = blobKey(opts);
  const known = await deps.cache.blobFor(layer.snapshot, key);
  if (known && (await deps.content.has(known.digest))) return known;
  const tmp = join(deps.tmpDir, `layer-${randomBytes(8).toString("hex")}`);
  try {
    const tar = diffUpperDir(deps.snapshots.path(layer.snapshot), { mtime: opts.epoch });
    const c = await compressLayer(tar, tmp, {
      compression: opts.compression,
      level: opts.compressionLevel,
    });
    await deps.content.ingest(createReadStream(tmp), { digest: c.digest, size: c.size });
    const blob: BlobRecord = {
      digest: c.digest,
      size: c.size,
      mediaType: c.mediaType,
      diffID: c.diffID,
    };
    await deps.cache.recordBlob(layer.snapshot, key, blob);
    return blob;
  } finally {
    await rm(tmp, { force: true });
  }
}

function dockerLayerType(mediaType: string): string {
  if (mediaType === MediaType.ociLayerGzip) return MediaType.dockerLayerGzip;
  if (mediaType === MediaType.ociLayer) return MediaType.dockerLayer;
  return mediaType;
}

/**
 * The final config: diff_ids of the actual layers; steps that made no layer marked empty.
 * Timestamps come from when each layer was made (or SOURCE_DATE_EPOCH), not from the export,
 * so rebuilding from the cache gives the same image digest.
 */
export function finalConfig(
  img: PlatformImage,
  blobs: BlobRecord[],
  epoch: string | undefined,
): ImageConfig {
  const layerTime = new Map<string, string>();
  for (const l of img.result.layers)
    if (l.producer && l.created) layerTime.set(l.producer, l.created);
  let last = epoch ?? img.config.created ?? new Date(0).toISOString();
  const history: HistoryEntry[] = (img.config.history ?? []).map((h, i) => {
    if (i < img.baseHistoryLength) {
      if (h.created && h.created > last && epoch === undefined) last = h.created;
      return h;
    }
    const entry: HistoryEntry = { ...h };
    const producer = img.historyProducers[i - img.baseHistoryLength];
    const made = producer === undefined ? undefined : layerTime.get(producer);
    if (producer !== undefined && img.result.layers.some((l) => l.producer === producer)) {
      delete entry.empty_layer;
    } else {
      entry.empty_layer = true;
    }
    if (made !== undefined && epoch === undefined) last = made;
    entry.created = last;
    return entry;
  });
  return {
    ...img.config,
    created: last,
    rootfs: { type: "layers", diff_ids: blobs.map((b) => b.diffID) },
    history,
  };
}

export async function assembleImages(
  deps: AssembleDeps,
  images: readonly PlatformImage[],
  opts: AssembleOptions,
): Promise<AssembledImage> {
  const epoch = opts.epoch === undefined ? undefined : new Date(opts.epoch * 1000).toISOString();
  const parallelism = opts.parallelism ?? 2;
  // layers shared between platforms (a common base) are resolved once
  const pending = new Map<string, Promise<BlobRecord>>();
  const blobOf = (l: LayerRecord): Promise<BlobRecord> => {
    let p = pending.get(l.snapshot);
    if (!p) {
      p = layerBlob(deps, l, opts);
      pending.set(l.snapshot, p);
    }
    return p;
  };
  const platforms: AssembledPlatform[] = [];
  for (const img of images) {
    const blobs = await mapBounded(img.result.layers, parallelism, blobOf);
    const config = finalConfig(img, blobs, epoch);
    const configBytes = encodeJSON(config);
    const configInfo = await deps.content.putBytes(configBytes);
    const configDesc: Descriptor = {
      mediaType: opts.ociMediaTypes ? MediaType.ociConfig : MediaType.dockerConfig,
      digest: configInfo.digest,
      size: configInfo.size,
    };
    const layers: Descriptor[] = blobs.map((b) => ({
      mediaType: opts.ociMediaTypes ? b.mediaType : dockerLayerType(b.mediaType),
      digest: b.digest,
      size: b.size,
    }));
    let manifest = manifestFor(configDesc, layers, {
      mediaType: opts.ociMediaTypes ? MediaType.ociManifest : MediaType.dockerManifest,
    });
    if (opts.manifestAnnotations) manifest = setAnnotations(manifest, opts.manifestAnnotations);
    const manifestBytes = encodeJSON(manifest, 2);
    const info = await deps.content.putBytes(manifestBytes);
    const manifestDesc: Descriptor = {
      mediaType: manifest.mediaType ?? MediaType.ociManifest,
      digest: info.digest,
      size: info.size,
      platform: fromPlatform(img.platform),
    };
    platforms.push({ platform: img.platform, manifest, manifestDesc, configDesc });
  }
  let index = appendManifests(
    emptyIndex(opts.ociMediaTypes ? MediaType.ociIndex : MediaType.dockerManifestList),
    platforms.map((p) => p.manifestDesc),
  );
  if (opts.indexAnnotations) index = setAnnotations(index, opts.indexAnnotations);
  const indexBytes = encodeJSON(index, 2);
  const indexInfo = await deps.content.putBytes(indexBytes);
  return {
    platforms,
    index,
    indexDesc: {
      mediaType: index.mediaType ?? MediaType.ociIndex,
      digest: indexInfo.digest,
      size: indexInfo.size,
    },
  };
}

/** Compression names as `--output compression=` accepts them. */
export function parseCompression(v: string): Compression {
  if (v === "gzip" || v === "zstd" || v === "uncompressed") return v;
  throw new KilnError("E_OUTPUT", `unknown compression ${JSON.stringify(v)}`, {
    hint: "use compression=gzip, zstd or uncompressed",
  });
}
