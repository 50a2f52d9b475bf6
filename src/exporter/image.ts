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
import { compressLayer, decompressStream } from "../archive/index.js";
import type { BlobRecord, BuildCache, FsResult, LayerRecord } from "../cache/index.js";
import type { ContentStore } from "../content/index.js";
import { KilnError } from "../errors.js";
import {
  MediaType,
  appendManifests,
  layerCompression,
  layerMediaType,
  emptyIndex,
  encodeJSON,
  goImageConfig,
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
import { INLINE_CACHE_KEY } from "../remotecache/format.js";
import { resolveAnnotations } from "./annotations.js";

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
  /** recompress pulled layers that use another compression too (else they go out as pulled) */
  forceCompression?: boolean;
  /** SOURCE_DATE_EPOCH (seconds): clamps layer mtimes and every timestamp of the config */
  epoch?: number;
  ociMediaTypes: boolean;
  /** `[TYPES:]KEY` → value, as `--annotation` takes them (see annotations.ts) */
  annotations?: Readonly<Record<string, string>>;
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
  /** `index-descriptor` annotations: for the top descriptor where a layout's index.json lists it */
  rootAnnotations: Record<string, string>;
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
  // d2: layers diffed against their lower view (older blobs kept unchanged entries)
  return `${opts.compression}${level}${epoch}-d2`;
}

/** The compressed blob of one layer (made once per snapshot and compression, then remembered). */
export async function layerBlob(
  deps: AssembleDeps,
  layer: LayerRecord,
  opts: AssembleOptions,
): Promise<BlobRecord> {
  // an imported layer not unpacked goes out as it is too (the engine unpacks it otherwise)
  const pulled = layer.blob && (!layer.producer || layer.remote) ? layer.blob : undefined;
  // a pulled layer is exported exactly as pulled unless another compression is forced on it
  if (pulled && !(opts.forceCompression && compressionOfBlob(pulled) !== opts.compression))
    return pulled;
  // pulled content never changes with the epoch; built layers clamp their mtimes to it
  const key = pulled ? blobKey({ ...opts, epoch: undefined }) : blobKey(opts);
  const known = await deps.cache.blobFor(layer.snapshot, key);
  if (known && (await deps.content.has(known.digest))) return known;
  const tmp = join(deps.tmpDir, `layer-${randomBytes(8).toString("hex")}`);
  try {
    const tar = pulled
      ? decompressStream(deps.content.openRead(pulled.digest), pulled.mediaType)
      : await deps.snapshots.diff(layer.snapshot, { mtime: opts.epoch });
    const c = await compressLayer(tar, tmp, {
      compression: opts.compression,
      level: opts.compressionLevel,
    });
    if (pulled && c.diffID !== pulled.diffID) {
      throw new KilnError(
        "E_LAYER_COMPRESS",
        `recompressing layer ${pulled.digest} changed its content (${pulled.diffID} → ${c.diffID})`,
        { hint: "remove kiln's content store so the base image is pulled again" },
      );
    }
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

function compressionOfBlob(b: BlobRecord): Compression | undefined {
  return layerCompression(b.mediaType);
}

/** A layer's media type in the manifest's family (OCI or Docker), as BuildKit converts them. */
function layerTypeIn(mediaType: string, oci: boolean): string {
  const c = layerCompression(mediaType);
  // non-distributable and foreign layers keep their own type
  const plain = new Set<string>([
    layerMediaType("uncompressed", "oci"),
    layerMediaType("gzip", "oci"),
    layerMediaType("zstd", "oci"),
    layerMediaType("uncompressed", "docker"),
    layerMediaType("gzip", "docker"),
    layerMediaType("zstd", "docker"),
  ]);
  if (c === undefined || !plain.has(mediaType)) return mediaType;
  return layerMediaType(c, oci ? "oci" : "docker");
}

/** A time as Go's RFC 3339 encoding writes it (no fraction when it is zero), as in BuildKit. */
export function epochTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/**
 * The final config: diff_ids of the actual layers; steps that made no layer marked empty.
 * Timestamps come from when each layer was made, not from the export, so rebuilding from the
 * cache gives the same image digest. With SOURCE_DATE_EPOCH, the build's own history entries
 * are dated at it and `created` is clamped to it (BuildKit's rule); inherited entries stay as the
 * base has them.
 */
export function finalConfig(
  img: PlatformImage,
  blobs: BlobRecord[],
  epoch: number | undefined,
): ImageConfig {
  const clamp = (t: string): string =>
    epoch !== undefined && !(Date.parse(t) <= epoch * 1000) ? epochTime(epoch) : t;
  const layerTime = new Map<string, string>();
  for (const l of img.result.layers)
    if (l.producer && l.created) layerTime.set(l.producer, l.created);
  let last = img.config.created ?? epochTime(0);
  const history: HistoryEntry[] = (img.config.history ?? []).map((h, i) => {
    if (i < img.baseHistoryLength) {
      if (h.created && Date.parse(h.created) > Date.parse(last)) last = h.created;
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
    if (made !== undefined) last = made;
    // BuildKit's frontend stamps each entry it writes with the epoch, metadata-only ones too
    if (epoch !== undefined) last = epochTime(epoch);
    entry.created = last;
    return entry;
  });
  const inline = (img.config as unknown as Record<string, unknown>)[INLINE_CACHE_KEY];
  return goImageConfig(
    {
      ...img.config,
      created: clamp(last),
      rootfs: { type: "layers", diff_ids: blobs.map((b) => b.diffID) },
      history,
    },
    inline === undefined ? {} : { [INLINE_CACHE_KEY]: inline },
  );
}

export async function assembleImages(
  deps: AssembleDeps,
  images: readonly PlatformImage[],
  opts: AssembleOptions,
): Promise<AssembledImage> {
  const notes = resolveAnnotations(opts.annotations ?? {});
  const indexNotes = notes.index;
  if (!opts.ociMediaTypes) {
    const any =
      Object.keys(indexNotes).length +
      Object.keys(notes.indexDescriptor).length +
      images.reduce(
        (n, img) =>
          n +
          Object.keys(notes.manifest(img.platform)).length +
          Object.keys(notes.manifestDescriptor(img.platform)).length,
        0,
      );
    if (any > 0) {
      throw new KilnError("E_OUTPUT", "annotations need OCI media types", {
        hint: "drop oci-mediatypes=false (Docker manifests and lists have no annotations), or drop --annotation",
      });
    }
  }
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
    const config = finalConfig(img, blobs, opts.epoch);
    const configBytes = encodeJSON(config);
    const configInfo = await deps.content.putBytes(configBytes);
    const configDesc: Descriptor = {
      mediaType: opts.ociMediaTypes ? MediaType.ociConfig : MediaType.dockerConfig,
      digest: configInfo.digest,
      size: configInfo.size,
    };
    const layers: Descriptor[] = blobs.map((b) => ({
      mediaType: layerTypeIn(b.mediaType, opts.ociMediaTypes),
      digest: b.digest,
      size: b.size,
    }));
    const manifest = setAnnotations(
      manifestFor(configDesc, layers, {
        mediaType: opts.ociMediaTypes ? MediaType.ociManifest : MediaType.dockerManifest,
      }),
      notes.manifest(img.platform),
    );
    const manifestBytes = encodeJSON(manifest, 2);
    const info = await deps.content.putBytes(manifestBytes);
    const manifestDesc = setAnnotations<Descriptor>(
      {
        mediaType: manifest.mediaType ?? MediaType.ociManifest,
        digest: info.digest,
        size: info.size,
        platform: fromPlatform(img.platform),
      },
      notes.manifestDescriptor(img.platform),
    );
    platforms.push({ platform: img.platform, manifest, manifestDesc, configDesc });
  }
  const index = setAnnotations(
    appendManifests(
      emptyIndex(opts.ociMediaTypes ? MediaType.ociIndex : MediaType.dockerManifestList),
      platforms.map((p) => p.manifestDesc),
    ),
    indexNotes,
  );
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
    rootAnnotations: notes.indexDescriptor,
  };
}
