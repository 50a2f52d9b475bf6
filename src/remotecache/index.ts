/**
 * Remote build cache: `--cache-from` loads cache records before solving so lookups can hit
 * them (a hit is unpacked from its blobs only when the build needs it), and `--cache-to`
 * writes the build's records and layer blobs after solving, in BuildKit's format. The engine
 * calls `importCaches`, wraps its result cache with `CacheWithImports`, and calls
 * `exportCaches` / `inlineCache` when the build is solved.
 */
import type { Readable } from "node:stream";
import type { BlobRecord, BuildCache, FsResult, LayerRecord } from "../cache/index.js";
import type { ContentStore } from "../content/index.js";
import { KilnError, messageOf } from "../errors.js";
import { topoSort, type Vertex } from "../graph/index.js";
import {
  layerCompression,
  layerMediaType,
  MediaType,
  encodeJSON,
  type Descriptor,
} from "../oci/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import type { RegistryClient } from "../registry/index.js";
import type { KeyRecord, ResultCache } from "../solver/index.js";
import { parseLayoutImageName } from "../source/index.js";
import {
  CACHE_CONFIG_MEDIA_TYPE,
  INLINE_CACHE_KEY,
  decodeCache,
  decodeInline,
  encodeCache,
  encodeInline,
  parseCacheConfig,
  type CacheConfig,
  type CacheEntry,
  type CachedLayer,
} from "./format.js";
import type { CacheExportSpec, CacheImportSpec, CacheMode } from "./spec.js";
import {
  localSource,
  localTarget,
  putJSONBlob,
  registrySource,
  registryTarget,
  type CacheSource,
  type CacheTarget,
} from "./store.js";

export { parseCacheFrom, parseCacheTo } from "./spec.js";
export type { CacheExportSpec, CacheImportSpec, CacheMode } from "./spec.js";
export { INLINE_CACHE_KEY } from "./format.js";

/** What the remote cache needs from the engine. */
export interface RemoteCacheDeps {
  client: RegistryClient;
  content: ContentStore;
  local: BuildCache;
  /** the snapshots a chain of layers (by diff ID, bottom first) is unpacked into */
  snapshotNames(diffIDs: readonly string[]): string[];
  /** unpacks a chain of blobs into snapshots (bottom first), fetching missing blobs with `fetch` */
  unpack(
    v: Vertex,
    layers: readonly { desc: Descriptor; diffID: string }[],
    fetch: (desc: Descriptor) => Readable,
    signal: AbortSignal,
  ): Promise<string[]>;
  /** the compressed blob of a result layer (made and stored in `content` if needed) */
  layerBlob(layer: LayerRecord, compression: "gzip" | "zstd" | "uncompressed"): Promise<BlobRecord>;
  warn(message: string, detail?: string): void;
}

interface Imported {
  layers: CachedLayer[];
  source: CacheSource;
}

/** The records of every `--cache-from`, by cache key (the first source that has a key wins). */
export class ImportedCache {
  private readonly blobs = new Map<string, CacheSource>();

  constructor(
    readonly entries: ReadonlyMap<string, Imported>,
    readonly sources: readonly CacheSource[],
  ) {
    for (const e of entries.values()) {
      for (const l of e.layers) if (!this.blobs.has(l.digest)) this.blobs.set(l.digest, e.source);
    }
  }

  static empty(): ImportedCache {
    return new ImportedCache(new Map(), []);
  }

  get(key: string): Imported | undefined {
    return this.entries.get(key);
  }

  /** The source a blob of an imported result is read from. */
  sourceOf(digest: string): CacheSource | undefined {
    return this.blobs.get(digest);
  }

  /** The repositories of `registry` that imported caches live in (blobs mount from them). */
  repositoriesOn(registry: string): string[] {
    return this.sources.flatMap((s) => (s.repo?.registry === registry ? [s.repo.repository] : []));
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * Loads every `--cache-from`. One that is unreachable, missing or invalid is a warning: the
 * build goes on without it, as BuildKit's does.
 */
export async function importCaches(
  specs: readonly CacheImportSpec[],
  deps: RemoteCacheDeps,
): Promise<ImportedCache> {
  const entries = new Map<string, Imported>();
  const sources: CacheSource[] = [];
  for (const spec of specs) {
    const source =
      spec.type === "registry"
        ? registrySource(deps.client, spec.ref)
        : await localSource(spec.src, spec.tag, spec.digest);
    try {
      const read = await readCache(source);
      if (read === undefined) {
        deps.warn(`cache ${source.name} not found: building without it`);
        continue;
      }
      sources.push(source);
      for (const e of read) {
        if (e.layers && !entries.has(e.key)) entries.set(e.key, { layers: e.layers, source });
      }
    } catch (e) {
      deps.warn(`cannot import cache ${source.name}: ${messageOf(e)}`, "building without it");
    }
  }
  return new ImportedCache(entries, sources);
}

/** The entries of a cache: a cache index, a cache image manifest, or an image with inline cache. */
async function readCache(source: CacheSource): Promise<CacheEntry[] | undefined> {
  const root = await source.root();
  if (!root) return undefined;
  const doc = parseJSON(root.bytes, source.name) as {
    manifests?: Descriptor[];
    config?: Descriptor;
    layers?: Descriptor[];
  };
  if (Array.isArray(doc.manifests)) {
    const config = doc.manifests.find((m) => m.mediaType === CACHE_CONFIG_MEDIA_TYPE);
    if (config) {
      const c = parseCacheConfig(await source.readBlob(config), source.name);
      return decodeCache(c, doc.manifests, source.name);
    }
    // an image index: each platform's config may carry its inline cache
    const out: CacheEntry[] = [];
    for (const m of doc.manifests) {
      const child = parseJSON(await source.manifest(m.digest), source.name) as typeof doc;
      out.push(...(await readInline(source, child)));
    }
    return out;
  }
  if (doc.config?.mediaType === CACHE_CONFIG_MEDIA_TYPE) {
    const c = parseCacheConfig(await source.readBlob(doc.config), source.name);
    return decodeCache(c, doc.layers ?? [], source.name);
  }
  return readInline(source, doc);
}

async function readInline(
  source: CacheSource,
  manifest: { config?: Descriptor; layers?: Descriptor[] },
): Promise<CacheEntry[]> {
  if (!manifest.config || !Array.isArray(manifest.layers)) return [];
  const config = parseJSON(await source.readBlob(manifest.config), source.name) as {
    rootfs?: { diff_ids?: string[] };
    history?: { created?: string; empty_layer?: boolean }[];
    [INLINE_CACHE_KEY]?: unknown;
  };
  const value = config[INLINE_CACHE_KEY];
  const diffIDs = config.rootfs?.diff_ids ?? [];
  if (value === undefined || diffIDs.length !== manifest.layers.length) return [];
  const created = (config.history ?? []).filter((h) => !h.empty_layer).map((h) => h.created);
  const image: CachedLayer[] = manifest.layers.map((l, i) => ({
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    diffID: diffIDs[i]!,
    createdAt: created[i],
  }));
  return decodeInline(value, image, source.name);
}

function parseJSON(bytes: Buffer, name: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new KilnError("E_CACHE_INVALID", `cache ${name}: its manifest is not JSON`);
  }
}

/**
 * The solver's result cache with imported records behind the local ones. An imported hit is a
 * result whose layers are only referenced (`remote`): it is unpacked into snapshots — fetching
 * the blobs the content store lacks — when a step needs it as an input (`prepare`), or when the
 * export needs its files; a build whose final step hits exports its layers as they are.
 */
export class CacheWithImports implements ResultCache<FsResult> {
  private readonly lazy = new WeakMap<FsResult, { v: Vertex; key: string; e: Imported }>();
  private readonly unpacked = new Map<string, Promise<FsResult>>();

  constructor(
    private readonly deps: RemoteCacheDeps,
    private readonly imported: ImportedCache,
    private readonly signal: AbortSignal,
  ) {}

  async load(key: string, v: Vertex): Promise<FsResult | undefined> {
    const hit = await this.deps.local.load(key);
    if (hit !== undefined) return hit;
    const e = this.imported.get(key);
    if (!e) return undefined;
    const snapshots = this.deps.snapshotNames(e.layers.map((l) => l.diffID));
    const layers: LayerRecord[] = e.layers.map((l, i) => ({
      snapshot: snapshots[i]!,
      blob: { digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: l.diffID },
      created: l.createdAt,
      remote: true,
    }));
    markProducers(v, layers);
    const result = { layers };
    this.lazy.set(result, { v, key, e });
    return result;
  }

  save(key: string, result: FsResult, contentKey?: string): Promise<void> {
    return this.deps.local.save(key, result, contentKey);
  }

  /** imported records carry no content key of their own: the export lists it as a record */
  contentKeyOf(key: string): Promise<string | undefined> {
    return this.deps.local.contentKeyOf(key);
  }

  /** The result with its layers unpacked (once per key), recorded in the local cache. */
  prepare(result: FsResult): Promise<FsResult> {
    const lazy = this.lazy.get(result);
    if (!lazy) return Promise.resolve(result);
    let p = this.unpacked.get(lazy.key);
    if (!p) {
      p = this.unpack(lazy, result);
      this.unpacked.set(lazy.key, p);
    }
    return p;
  }

  private async unpack(
    { v, key, e }: { v: Vertex; key: string; e: Imported },
    result: FsResult,
  ): Promise<FsResult> {
    await this.deps.unpack(
      v,
      e.layers.map((l) => ({ desc: descriptorOf(l), diffID: l.diffID })),
      (desc) => e.source.openBlob(desc),
      this.signal,
    );
    const layers = result.layers.map(({ remote: _remote, ...l }) => l);
    for (const l of layers) {
      // a built layer is exported from its recorded blob, never compressed again
      const compression = l.producer ? layerCompression(l.blob!.mediaType) : undefined;
      if (compression) await this.deps.local.recordBlob(l.snapshot, compression, l.blob!);
    }
    const unpacked = { layers };
    await this.deps.local.save(key, unpacked);
    return unpacked;
  }
}

function descriptorOf(l: CachedLayer): Descriptor {
  return { mediaType: l.mediaType, digest: l.digest, size: l.size };
}

/**
 * The inputs whose results v's result is stacked from (bottom first), and whether v adds a
 * layer of its own on top: a RUN, COPY or ADD adds one to its base input's layers (a COPY
 * --link is a single-layer copy merged onto the stage); an image's layers are its own.
 */
function layerInputs(v: Vertex): { inputs: Vertex[]; adds: boolean } {
  switch (v.op.kind) {
    case "exec":
      return { inputs: v.inputs.slice(0, 1), adds: true };
    case "file":
      return { inputs: v.op.dest >= 0 ? [v.inputs[v.op.dest]!] : [], adds: true };
    case "http":
    case "git":
      return { inputs: [], adds: true };
    case "merge":
      return { inputs: [...v.inputs], adds: false };
    case "image":
    case "local":
      return { inputs: [], adds: false };
  }
}

/**
 * Marks which step made each layer of v's result, from the top down (the image history matches
 * layers to steps by it); returns the index below v's layers. An image's layers are unmarked
 * (pulled), and take all that is left below.
 */
function markProducers(v: Vertex, layers: LayerRecord[], top = layers.length - 1): number {
  if (v.op.kind === "image") return -1;
  const { inputs, adds } = layerInputs(v);
  if (adds && top >= 0) layers[top--]!.producer = v.digest;
  for (const i of [...inputs].reverse()) top = markProducers(i, layers, top);
  return top;
}

/**
 * The vertices whose records a cache export holds: every one (mode=max), or those whose
 * layers make up the final images (mode=min: not a stage only reached through COPY --from).
 */
function exported(roots: readonly Vertex[], mode: CacheMode): Vertex[] {
  if (mode === "max") return topoSort(roots);
  const out = new Map<string, Vertex>();
  const visit = (v: Vertex): void => {
    if (out.has(v.digest)) return;
    out.set(v.digest, v);
    layerInputs(v).inputs.forEach(visit);
  };
  roots.forEach(visit);
  return [...out.values()];
}

/** The solved build as the exporter sees it. */
export interface SolvedBuild {
  roots: readonly Vertex[];
  /** the keys a vertex's result is recorded under (its cache key first) */
  recordsOf(v: Vertex): Promise<KeyRecord[]>;
  imported: ImportedCache;
}

/** A cache a node pushed by digest (`part`), for the client to merge under the tag. */
export interface CachePart {
  ref: string;
  digest: string;
}

/**
 * Writes every `--cache-to` but inline; a failure fails the build unless ignore-error=true.
 * Returns the parts pushed by digest.
 */
export async function exportCaches(
  specs: readonly CacheExportSpec[],
  build: SolvedBuild,
  deps: RemoteCacheDeps,
): Promise<CachePart[]> {
  const parts: CachePart[] = [];
  for (const spec of specs) {
    if (spec.type === "inline") continue;
    const name = spec.type === "registry" ? spec.ref : spec.dest;
    try {
      const target =
        spec.type === "registry"
          ? registryTarget(deps.client, spec.ref)
          : await localTarget(spec.dest, spec.tag);
      const root = await exportTo(target, spec, build, deps);
      if (root && spec.type === "registry" && spec.part) {
        parts.push({ ref: spec.ref, digest: root.digest });
      }
    } catch (e) {
      failed(spec, name, e, deps);
    }
  }
  return parts;
}

function failed(
  spec: { ignoreError: boolean },
  name: string,
  e: unknown,
  deps: Pick<RemoteCacheDeps, "warn">,
): void {
  if (!spec.ignoreError) {
    throw new KilnError("E_CACHE_EXPORT", `cannot export cache to ${name}: ${messageOf(e)}`, {
      hint: "fix the destination, or add ignore-error=true to --cache-to to build without it",
      cause: e,
    });
  }
  deps.warn(`cannot export cache to ${name}: ${messageOf(e)}`, "ignored (ignore-error=true)");
}

type StoredSpec = Extract<CacheExportSpec, { type: "registry" | "local" }>;

async function exportTo(
  target: CacheTarget,
  spec: StoredSpec,
  build: SolvedBuild,
  deps: RemoteCacheDeps,
): Promise<Descriptor | undefined> {
  const entries: CacheEntry[] = [];
  const open = new Map<string, () => Readable>();
  const family = spec.ociMediaTypes ? "oci" : "docker";
  const mountFrom = new Set<string>();
  const sameRegistry = (repo: { registry: string; repository: string } | undefined): void => {
    if (repo && target.repo && repo.registry === target.repo.registry)
      mountFrom.add(repo.repository);
  };
  for (const s of build.imported.sources) sameRegistry(s.repo);
  for (const v of exported(build.roots, spec.mode)) {
    // an oci-layout:// context's image has no registry to mount from
    if (v.op.kind === "image" && !parseLayoutImageName(v.op.ref)) {
      const r = parseReference(v.op.ref);
      sameRegistry({ registry: registryHost(r), repository: r.repository });
    }
    const records = await build.recordsOf(v);
    const layers = (
      await resultLayers(
        records.map((r) => r.key),
        build,
        deps,
        open,
        spec.compression,
      )
    )?.map((l) => ({
      ...l,
      mediaType: layerMediaType(layerCompression(l.mediaType) ?? "gzip", family),
    }));
    for (const r of records) entries.push({ key: r.key, inputs: r.inputs, layers });
  }
  const { config, blobs } = encodeCache(entries);
  if (blobs.length === 0) {
    deps.warn(`cache export to ${target.name} skipped: no step of this build made a layer`);
    return undefined;
  }
  await target.putBlobs(
    blobs.map((desc) => ({ desc, open: open.get(desc.digest)! })),
    [...mountFrom],
  );
  return writeRoot(target, spec, config, blobs, spec.type === "registry" && spec.part === true);
}

/** Writes the config blob and the root (index, or manifest with image-manifest=true). */
async function writeRoot(
  target: CacheTarget,
  spec: Pick<StoredSpec, "imageManifest" | "ociMediaTypes">,
  config: CacheConfig,
  blobs: Descriptor[],
  untagged: boolean,
): Promise<Descriptor> {
  const configDesc = await putJSONBlob(target, config, CACHE_CONFIG_MEDIA_TYPE);
  const root = spec.imageManifest
    ? {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: configDesc,
        layers: blobs,
      }
    : {
        schemaVersion: 2,
        mediaType: spec.ociMediaTypes ? MediaType.ociIndex : MediaType.dockerManifestList,
        manifests: [...blobs, configDesc],
      };
  return target.putRoot(encodeJSON(root), root.mediaType, untagged);
}

/**
 * Merges the parts several nodes pushed by digest into one cache under the spec's tag (the
 * blobs are in the repository already): one ref then serves every platform of the build.
 */
export async function mergeCacheParts(
  client: RegistryClient,
  spec: Extract<CacheExportSpec, { type: "registry" }>,
  digests: readonly string[],
  warn: (message: string, detail?: string) => void,
): Promise<void> {
  try {
    const r = parseReference(spec.ref);
    const entries: CacheEntry[] = [];
    for (const digest of digests) {
      const part = await readCache(
        registrySource(client, `${r.registry}/${r.repository}@${digest}`),
      );
      if (!part) throw new KilnError("E_CACHE_EXPORT", `cache part ${digest} is gone`);
      entries.push(...part);
    }
    const { config, blobs } = encodeCache(entries);
    if (blobs.length === 0) return;
    await writeRoot(registryTarget(client, spec.ref), spec, config, blobs, false);
  } catch (e) {
    failed(spec, spec.ref, e, { warn });
  }
}

/**
 * The layers of a result for export, by the keys it is recorded under: a local result (its
 * blobs made if needed), else an imported one (its blobs stay where they are until the export
 * copies them).
 */
async function resultLayers(
  keys: readonly string[],
  build: SolvedBuild,
  deps: RemoteCacheDeps,
  open: Map<string, () => Readable>,
  compression: "gzip" | "zstd" | "uncompressed",
): Promise<CachedLayer[] | undefined> {
  let local: FsResult | undefined;
  for (const key of keys) {
    local = await deps.local.load(key);
    if (local) break;
  }
  if (local) {
    if (local.layers.length === 0) return undefined;
    const out: CachedLayer[] = [];
    for (const l of local.layers) {
      const b = await deps.layerBlob(l, compression);
      open.set(b.digest, () => deps.content.openRead(b.digest));
      out.push({ ...b, createdAt: l.created });
    }
    return out;
  }
  const e = keys.map((k) => build.imported.get(k)).find((x) => x !== undefined);
  if (!e) return undefined;
  for (const l of e.layers) {
    if (open.has(l.digest)) continue;
    // the content store may hold it from an earlier unpack; the source always does
    const stored = await deps.content.has(l.digest);
    open.set(l.digest, () =>
      stored ? deps.content.openRead(l.digest) : e.source.openBlob(descriptorOf(l)),
    );
  }
  return e.layers;
}

/**
 * The inline cache value for one platform's image (the `moby.buildkit.cache.v0` config key):
 * records of the steps whose results are the image's bottom layers (mode=min, as BuildKit),
 * with their layer indexes into the image.
 */
export async function inlineCache(
  root: Vertex,
  result: FsResult,
  build: SolvedBuild,
): Promise<string> {
  const image = result.layers.map((l) => ({
    digest: l.snapshot,
    size: 0,
    mediaType: "",
    diffID: "",
  }));
  const entries: CacheEntry[] = [];
  const seen = new Set<string>();
  // v's result is the image's bottom `depth` layers
  const visit = async (v: Vertex, depth: number): Promise<void> => {
    if (seen.has(v.digest) || depth < 0) return;
    seen.add(v.digest);
    const layers = depth > 0 ? image.slice(0, depth) : undefined;
    for (const r of await build.recordsOf(v))
      entries.push({ key: r.key, inputs: r.inputs, layers });
    const { inputs: below, adds } = layerInputs(v);
    // only the bottom input of a stack is a prefix; the layers above it must be countable
    let rest = depth - (adds ? 1 : 0);
    for (const i of below.slice(1)) {
      const n = layerCount(i);
      if (n === undefined) return;
      rest -= n;
    }
    if (below[0]) await visit(below[0], rest);
  };
  await visit(root, result.layers.length);
  return encodeInline(entries, image);
}

/** How many layers v's result has, from the graph alone (undefined: an image's are unknown). */
function layerCount(v: Vertex): number | undefined {
  if (v.op.kind === "image") return undefined;
  const { inputs, adds } = layerInputs(v);
  let n = adds ? 1 : 0;
  for (const i of inputs) {
    const c = layerCount(i);
    if (c === undefined) return undefined;
    n += c;
  }
  return n;
}
