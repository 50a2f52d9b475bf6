/**
 * The engine's side of `--cache-from` / `--cache-to`: wires the remote cache module to this
 * build's state, registry client and base-image unpacker.
 */
import type { FsResult } from "../cache/index.js";
import type { ConvertResult } from "../frontend/dockerfile/convert.js";
import type { Vertex } from "../graph/index.js";
import { layerBlobsFor } from "../exporter/image.js";
import type { AssembleOptions, PlatformImage } from "../exporter/image.js";
import type { ExportContext } from "../exporter/export.js";
import { KilnError } from "../errors.js";
import { layerCompression } from "../oci/index.js";
import type { ProgressSink } from "../progress/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import type { RegistryClient } from "../registry/index.js";
import {
  CacheWithImports,
  ImportedCache,
  INLINE_CACHE_KEY,
  exportCaches,
  importCaches,
  inlineCache,
  type CachePart,
  type RemoteCacheDeps,
} from "../remotecache/index.js";
import type { KeyRecord, ResultCache } from "../solver/index.js";
import { layerSnapshots, type Images } from "./images.js";
import type { BuildRequest, OutputSpec } from "../request/index.js";
import type { KilnState } from "./state.js";

export class BuildRemoteCache {
  private constructor(
    private readonly req: BuildRequest,
    private readonly deps: RemoteCacheDeps,
    private readonly imported: ImportedCache,
    /** the solver's result cache: local records, then imported ones */
    readonly results: ResultCache<FsResult>,
  ) {}

  /** Whether any --cache-from could be read. */
  get imports(): boolean {
    return this.imported.size > 0;
  }

  /** Imports every --cache-from (warnings for those that cannot be read). */
  static async open(
    req: BuildRequest,
    o: {
      state: KilnState;
      client: RegistryClient;
      images: Images;
      sink: ProgressSink;
      signal: AbortSignal;
    },
  ): Promise<BuildRemoteCache> {
    const deps: RemoteCacheDeps = {
      client: o.client,
      content: o.state.content,
      local: o.state.cache,
      snapshotNames: layerSnapshots,
      unpack: (v, layers, fetch, signal) => o.images.unpackLayers(v, layers, fetch, signal),
      layerBlob: (layer, compression) =>
        layerBlobsFor(
          {
            content: o.state.content,
            cache: o.state.cache,
            snapshots: o.state.snapshots,
            tmpDir: o.state.tmpDir,
          },
          { compression, ociMediaTypes: true },
        ).blobOf(layer),
      warn: (message, detail) => {
        o.sink.write({ type: "warning", message, detail });
      },
    };
    const from = req.cacheFrom ?? [];
    const imported = from.length ? await importCaches(from, deps) : ImportedCache.empty();
    const results = imported.size ? new CacheWithImports(deps, imported, o.signal) : o.state.cache;
    return new BuildRemoteCache(req, deps, imported, results);
  }

  /**
   * The images with imported layers unpacked where the outputs need them: only pushes of
   * layers as they are (same compression, no SOURCE_DATE_EPOCH) leave them referenced.
   */
  async forExport(
    images: PlatformImage[],
    outputs: readonly OutputSpec[],
    opts: AssembleOptions,
  ): Promise<PlatformImage[]> {
    const prepare = this.results.prepare?.bind(this.results);
    if (!prepare) return images;
    const pushOnly =
      outputs.length > 0 &&
      outputs.every((o) => o.type === "image" && o.push) &&
      opts.epoch === undefined &&
      !opts.forceCompression;
    return Promise.all(
      images.map(async (img) => {
        const asIs = img.result.layers.every(
          (l) => !l.remote || layerCompression(l.blob!.mediaType) === opts.compression,
        );
        return pushOnly && asIs ? img : { ...img, result: await prepare(img.result) };
      }),
    );
  }

  /** Where a push finds imported blobs it did not fetch. */
  get remoteBlobs(): ExportContext["remoteBlobs"] {
    if (this.imported.size === 0) return undefined;
    return {
      mountFrom: (registry) => this.imported.repositoriesOn(registry),
      open: (desc) => {
        const source = this.imported.sourceOf(desc.digest);
        if (!source) throw new KilnError("E_INTERNAL", `no cache holds blob ${desc.digest}`);
        return source.openBlob(desc);
      },
    };
  }

  private get wantsInline(): boolean {
    return (this.req.cacheTo ?? []).some((s) => s.type === "inline");
  }

  /** With `--cache-to type=inline`: the images' configs carry their cache records. */
  async withInline(
    images: PlatformImage[],
    conversions: readonly ConvertResult[],
    recordsOf: (v: Vertex) => Promise<KeyRecord[]>,
  ): Promise<PlatformImage[]> {
    if (!this.wantsInline) return images;
    return Promise.all(
      images.map(async (img, i) => {
        const root = conversions[i]!.root;
        if (!root || img.result.layers.length === 0) return img;
        const value = await inlineCache(root, img.result, {
          roots: [root],
          recordsOf,
          imported: this.imported,
        });
        return { ...img, config: { ...img.config, [INLINE_CACHE_KEY]: value } };
      }),
    );
  }

  /** Writes every registry/local --cache-to; returns the parts pushed by digest (multi-node). */
  export(
    roots: readonly Vertex[],
    recordsOf: (v: Vertex) => Promise<KeyRecord[]>,
  ): Promise<CachePart[]> {
    return exportCaches(
      this.req.cacheTo ?? [],
      { roots, recordsOf, imported: this.imported },
      this.deps,
    );
  }

  get exports(): boolean {
    return (this.req.cacheTo ?? []).some((s) => s.type !== "inline");
  }
}

/** Registries of caches marked `registry.insecure=true` (plain HTTP allowed). */
export function insecureCacheHosts(req: BuildRequest): string[] {
  return [...(req.cacheFrom ?? []), ...(req.cacheTo ?? [])].flatMap((s) =>
    s.type === "registry" && s.insecure ? [registryHost(parseReference(s.ref))] : [],
  );
}
