/**
 * Image assembly: each platform's stack of layers plus its config becomes layer blobs, a
 * config blob and a manifest in the content store; all platforms become one index. Base
 * layers keep the blobs they were pulled as (never recompressed); built layers are diffed
 * and compressed once, and the blob is remembered for the next export.
 */
import type { BlobRecord, BuildCache, FsResult, LayerRecord } from "../cache/index.js";
import { DocumentBatch, type ContentStore } from "../content/index.js";
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
  type GoImageConfig,
  type HistoryEntry,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from "../oci/index.js";
import type { Platform } from "../platform/types.js";
import type { Snapshotter } from "../snapshot/index.js";
import { INLINE_CACHE_KEY } from "../remotecache/format.js";
import { resolveAnnotations } from "./annotations.js";
import {
  imageSubjects,
  statementOf,
  storeAttestations,
  type Attestation,
  type StoredAttestations,
} from "../attest/index.js";
import { LayerBlobs, type LayerBlobOptions } from "./layers.js";

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
  /** per platform (in `images` order): attestations stored beside its manifest */
  attestations?: readonly (readonly Attestation[])[];
  /** image names the attestations' subjects are named after */
  subjectNames?: readonly string[];
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
  /** attestation manifests, listed in the index after the images */
  attestations: StoredAttestations[];
}

export interface AssembleDeps {
  content: ContentStore;
  cache: BuildCache;
  snapshots: Snapshotter;
  tmpDir: string;
}

/** The layer blob maker for an export with these options. */
export function layerBlobsFor(
  deps: AssembleDeps,
  opts: AssembleOptions & Pick<LayerBlobOptions, "twins">,
): LayerBlobs {
  return new LayerBlobs(deps, opts);
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
): GoImageConfig {
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

/**
 * `layers` holds the blobs made so far (started while the build ran); without it every
 * layer is made here.
 */
export async function assembleImages(
  deps: AssembleDeps,
  images: readonly PlatformImage[],
  opts: AssembleOptions,
  layers: LayerBlobs = layerBlobsFor(deps, opts),
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
  const blobOf = (l: LayerRecord): Promise<BlobRecord> => layers.blobOf(l);
  // every document is written at once, each named by its digest before it is on disk: each
  // small blob written costs fsyncs, not CPU
  const docs = new DocumentBatch(deps.content);
  const platforms = await Promise.all(
    images.map(async (img): Promise<AssembledPlatform> => {
      const blobs = await mapBounded(img.result.layers, parallelism, blobOf);
      const config = finalConfig(img, blobs, opts.epoch);
      const configInfo = docs.put(encodeJSON(config));
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
      const info = docs.put(encodeJSON(manifest, 2));
      const manifestDesc = setAnnotations<Descriptor>(
        {
          mediaType: manifest.mediaType ?? MediaType.ociManifest,
          digest: info.digest,
          size: info.size,
          platform: fromPlatform(img.platform),
        },
        notes.manifestDescriptor(img.platform),
      );
      return { platform: img.platform, manifest, manifestDesc, configDesc };
    }),
  );
  const attestations = attestationManifests(docs, platforms, opts);
  const index = setAnnotations(
    appendManifests(
      emptyIndex(opts.ociMediaTypes ? MediaType.ociIndex : MediaType.dockerManifestList),
      [...platforms.map((p) => p.manifestDesc), ...attestations.map((a) => a.descriptor)],
    ),
    indexNotes,
  );
  const indexInfo = docs.put(encodeJSON(index, 2));
  await docs.stored();
  return {
    platforms,
    index,
    indexDesc: {
      mediaType: index.mediaType ?? MediaType.ociIndex,
      digest: indexInfo.digest,
      size: indexInfo.size,
    },
    rootAnnotations: notes.indexDescriptor,
    attestations,
  };
}

/** Each platform's inline attestations as an attestation manifest (BuildKit's storage). */
function attestationManifests(
  docs: DocumentBatch,
  platforms: readonly AssembledPlatform[],
  opts: AssembleOptions,
): StoredAttestations[] {
  const stored = platforms.map((p, i): StoredAttestations | undefined => {
    const atts = opts.attestations?.[i] ?? [];
    if (atts.length === 0) return undefined;
    if (!opts.ociMediaTypes) {
      throw new KilnError("E_OUTPUT", 'cannot export attestations with "oci-mediatypes=false"', {
        hint: "drop oci-mediatypes=false, or build with --provenance=false (and no --sbom/--attest)",
      });
    }
    const subject = imageSubjects(opts.subjectNames ?? [], p.platform, p.manifestDesc.digest);
    const target: Descriptor = {
      mediaType: p.manifestDesc.mediaType,
      digest: p.manifestDesc.digest,
      size: p.manifestDesc.size,
    };
    return storeAttestations(
      docs,
      target,
      atts.map((a) => statementOf(a, subject)),
    );
  });
  return stored.filter((a) => a !== undefined);
}
