/**
 * BuildKit's distributable cache format (cache/remotecache/v1): a config blob of media type
 * application/vnd.buildkit.cacheconfig.v0 listing `layers` (a blob and the index of its parent
 * layer) and `records` (a cache key, links to the records of its inputs, and results that
 * point at the top layer of a chain). kiln writes its own cache keys into that structure, so
 * registries and tools that handle BuildKit caches handle kiln's. Pure code: encode and decode.
 */
import { KilnError } from "../errors.js";
import type { Descriptor } from "../oci/index.js";

export const CACHE_CONFIG_MEDIA_TYPE = "application/vnd.buildkit.cacheconfig.v0";
/** descriptor annotation with a layer's uncompressed digest (its diff ID) */
export const UNCOMPRESSED_ANNOTATION = "containerd.io/uncompressed";
/** descriptor annotation with the time the layer was made */
export const CREATED_ANNOTATION = "buildkit/createdat";
/** image config key of the inline cache: base64 of the JSON records array */
export const INLINE_CACHE_KEY = "moby.buildkit.cache.v0";

/** One layer blob of a cached result. */
export interface CachedLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffID: string;
  createdAt?: string;
}

/** One cache record as kiln uses it: a key, its inputs' keys, and its result's layers. */
export interface CacheEntry {
  key: string;
  inputs: string[];
  /** bottom layer first; undefined when the record carries no result (e.g. mode=min) */
  layers?: CachedLayer[];
}

interface ConfigLayer {
  blob: string;
  /** Go's omitempty drops 0: a missing parent means 0, -1 means none */
  parent?: number;
  annotations?: { mediaType?: string; diffID?: string; size?: number; createdAt?: string };
}

interface ConfigRecord {
  digest: string;
  layers?: { layer: number; createdAt: string }[];
  chains?: { layers: number[]; createdAt: string }[];
  inputs?: { selector?: string; link: number }[][];
}

export interface CacheConfig {
  layers?: ConfigLayer[];
  records?: ConfigRecord[];
}

const ZERO_TIME = "0001-01-01T00:00:00Z";

/** The config and the layer blobs (deduplicated, annotated) that a set of entries needs. */
export function encodeCache(entries: readonly CacheEntry[]): {
  config: CacheConfig;
  blobs: Descriptor[];
} {
  const layers: ConfigLayer[] = [];
  const layerIndex = new Map<string, number>();
  const blobs = new Map<string, Descriptor>();
  const chainTop = (chain: readonly CachedLayer[]): number => {
    let parent = -1;
    for (const l of chain) {
      const id = `${l.digest} ${parent}`;
      let i = layerIndex.get(id);
      if (i === undefined) {
        i = layers.length;
        layers.push(parent === 0 ? { blob: l.digest } : { blob: l.digest, parent });
        layerIndex.set(id, i);
      }
      if (!blobs.has(l.digest)) {
        const annotations: Record<string, string> = { [UNCOMPRESSED_ANNOTATION]: l.diffID };
        if (l.createdAt) annotations[CREATED_ANNOTATION] = l.createdAt;
        blobs.set(l.digest, {
          mediaType: l.mediaType,
          digest: l.digest,
          size: l.size,
          annotations,
        });
      }
      parent = i;
    }
    return parent;
  };
  const unique = new Map<string, CacheEntry>();
  for (const e of entries) {
    const prev = unique.get(e.key);
    if (!prev || (!prev.layers && e.layers)) unique.set(e.key, e);
  }
  const recordIndex = new Map([...unique.keys()].map((k, i) => [k, i]));
  const records: ConfigRecord[] = [...unique.values()].map((e) => {
    const r: ConfigRecord = { digest: e.key };
    if (e.layers?.length) {
      r.layers = [
        { layer: chainTop(e.layers), createdAt: e.layers.at(-1)!.createdAt ?? ZERO_TIME },
      ];
    }
    const links = e.inputs.map((k) => {
      const link = recordIndex.get(k);
      return link === undefined ? [] : [{ link }];
    });
    if (links.some((l) => l.length > 0)) r.inputs = links;
    return r;
  });
  return { config: { layers, records }, blobs: [...blobs.values()] };
}

function invalid(source: string, why: string): KilnError {
  return new KilnError("E_CACHE_INVALID", `cache ${source}: ${why}`, {
    hint: "export the cache again (--cache-to), or drop this --cache-from",
  });
}

/** Parses a cache config blob (JSON) into its structure, checking the shape kiln relies on. */
export function parseCacheConfig(bytes: Uint8Array, source: string): CacheConfig {
  let c: unknown;
  try {
    c = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw invalid(source, "the cache config is not JSON");
  }
  const ok =
    typeof c === "object" &&
    c !== null &&
    !Array.isArray(c) &&
    (!("layers" in c) || Array.isArray(c.layers)) &&
    (!("records" in c) || Array.isArray(c.records));
  if (!ok) throw invalid(source, "the cache config has no layers/records lists");
  return c as CacheConfig;
}

/**
 * The entries a config describes. `blobs` are the layer descriptors the manifest or index
 * lists (with their diff IDs); a record whose layers are not all known gets no result.
 */
export function decodeCache(
  config: CacheConfig,
  blobs: readonly Descriptor[],
  source: string,
): CacheEntry[] {
  const byDigest = new Map(blobs.map((b) => [b.digest, b]));
  const layers = config.layers ?? [];
  const layerOf = (i: number, createdAt: string | undefined): CachedLayer | undefined => {
    const l = layers[i];
    if (!l || typeof l.blob !== "string") return undefined;
    const d = byDigest.get(l.blob);
    const diffID = d?.annotations?.[UNCOMPRESSED_ANNOTATION] ?? l.annotations?.diffID;
    const mediaType = d?.mediaType ?? l.annotations?.mediaType;
    const size = d?.size ?? l.annotations?.size;
    if (!diffID || !mediaType || size === undefined) return undefined;
    const created = d?.annotations?.[CREATED_ANNOTATION] ?? l.annotations?.createdAt ?? createdAt;
    return { digest: l.blob, size, mediaType, diffID, createdAt: created };
  };
  const chainFrom = (top: number, recorded: string): CachedLayer[] | undefined => {
    // Go writes the zero time for a result that has none
    const createdAt = recorded === ZERO_TIME ? undefined : recorded;
    const out: CachedLayer[] = [];
    const seen = new Set<number>();
    for (let i = top; i >= 0; i = layers[i]?.parent ?? 0) {
      if (seen.has(i)) throw invalid(source, `layer ${i} is its own ancestor`);
      seen.add(i);
      const l = layerOf(i, out.length === 0 ? createdAt : undefined);
      if (!l) return undefined;
      out.unshift(l);
    }
    return out;
  };
  const records = config.records ?? [];
  return records.map((r) => {
    let result: CachedLayer[] | undefined;
    const first = r.layers?.[0];
    const chain = r.chains?.[0];
    if (first && Number.isInteger(first.layer)) result = chainFrom(first.layer, first.createdAt);
    else if (chain && Array.isArray(chain.layers)) {
      const ls = chain.layers.map((i) => layerOf(i, undefined));
      result = ls.every((l) => l !== undefined) ? ls : undefined;
    }
    const inputs = (r.inputs ?? []).flatMap((links) =>
      links.map((l) => records[l.link]?.digest).filter((d): d is string => d !== undefined),
    );
    return { key: r.digest, inputs, layers: result };
  });
}

/**
 * The inline form (in the image config): only the records, and their layer indexes are the
 * image's own layers (each the parent of the next). Entries must be prefixes of `image`.
 */
export function encodeInline(
  entries: readonly CacheEntry[],
  image: readonly CachedLayer[],
): string {
  const { config } = encodeCache(entries.filter((e) => isPrefix(e.layers, image)));
  // encodeCache numbered layers in chain order from the image's bottom; map to image indexes
  const imageIndex = (i: number): number => {
    let depth = 0;
    for (let j = i; j >= 0; j = config.layers![j]?.parent ?? 0) depth++;
    return depth - 1;
  };
  const records = (config.records ?? []).map((r) =>
    r.layers ? { ...r, layers: r.layers.map((l) => ({ ...l, layer: imageIndex(l.layer) })) } : r,
  );
  return Buffer.from(JSON.stringify(records)).toString("base64");
}

function isPrefix(
  chain: readonly CachedLayer[] | undefined,
  image: readonly CachedLayer[],
): boolean {
  return (
    chain !== undefined &&
    chain.length > 0 &&
    chain.length <= image.length &&
    chain.every((l, i) => l.digest === image[i]!.digest)
  );
}

/** Entries of an inline cache, given the image's layers (descriptors with diff IDs and times). */
export function decodeInline(
  value: unknown,
  image: readonly CachedLayer[],
  source: string,
): CacheEntry[] {
  if (typeof value !== "string") throw invalid(source, `${INLINE_CACHE_KEY} is not a string`);
  let records: unknown;
  try {
    records = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
  } catch {
    throw invalid(source, `${INLINE_CACHE_KEY} is not base64 of JSON`);
  }
  if (!Array.isArray(records))
    throw invalid(source, `${INLINE_CACHE_KEY} is not a list of records`);
  const layers: ConfigLayer[] = image.map((l, i) =>
    i === 1 ? { blob: l.digest } : { blob: l.digest, parent: i - 1 },
  );
  const blobs: Descriptor[] = image.map((l) => ({
    mediaType: l.mediaType,
    digest: l.digest,
    size: l.size,
    annotations: {
      [UNCOMPRESSED_ANNOTATION]: l.diffID,
      ...(l.createdAt ? { [CREATED_ANNOTATION]: l.createdAt } : {}),
    },
  }));
  return decodeCache({ layers, records: records as ConfigRecord[] }, blobs, source);
}
