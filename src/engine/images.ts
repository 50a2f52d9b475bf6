/**
 * Base images: resolving `FROM name` to a platform-specific manifest and its config (for the
 * frontend), and pulling its layers into snapshots (for the worker). Each layer is unpacked
 * once per chain (keyed by its chain ID) and shared by every image and platform that has it;
 * the compressed blob stays in the content store so exports reuse it untouched.
 */
import { createHash } from "node:crypto";
import { KilnError } from "../errors.js";
import type { Vertex } from "../graph/index.js";
import { PassThrough, type Readable } from "node:stream";
import {
  type Descriptor,
  isDigest,
  parseManifestOrIndex,
  type ParsedDocument,
  parseConfig,
  parseManifest,
  type ImageConfig,
  type ImageManifest,
} from "../oci/index.js";
import { formatAll, normalize } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import { formatReference, parseReference, registryHost, withDigest } from "../reference/index.js";
import { RegistryClient, selectPlatform, type RepositoryRef } from "../registry/index.js";
import { unpackLayerBlob } from "../archive/index.js";
import { pulledLayerId, stepSnapshotId } from "../snapshot/index.js";
import {
  OciLayoutSource,
  layoutImageName,
  parseLayoutImageName,
  parseOciLayoutContext,
} from "../source/index.js";
import type { LayerRecord } from "../cache/index.js";
import type { KilnState } from "./state.js";
import type { ProgressSink } from "../progress/index.js";

export interface ResolvedImage {
  /** `registry/repo@sha256:…` of the platform manifest */
  ref: string;
  manifestDigest: string;
  /** what the name resolved to: its index, or the manifest of a single-platform image */
  resolvedDigest: string;
  config: ImageConfig;
}

export interface ImagePuller {
  pull(v: Vertex, signal: AbortSignal): Promise<LayerRecord[]>;
}

/**
 * Where an image's documents and blobs come from: a registry repository, or the OCI layout of an
 * `oci-layout://` build context. Resolving and pulling are the same for both.
 */
interface ImageOrigin {
  display: string;
  /** the tag or digest the name stands for */
  reference: string;
  /** a manifest or index by tag or digest (stored in the content store) */
  document(reference: string): Promise<{ digest: string; doc: ParsedDocument }>;
  blob(desc: Descriptor): Readable;
  /** the graph's name for the platform manifest `digest` */
  pinned(digest: string): string;
}

/** The `oci-layout://` named contexts of a request, opened (tag or digest resolved), by name. */
export async function openLayoutContexts(
  named: Readonly<Record<string, string>>,
): Promise<Map<string, OciLayoutSource>> {
  const out = new Map<string, OciLayoutSource>();
  for (const [name, value] of Object.entries(named)) {
    const spec = parseOciLayoutContext(value);
    if (spec) out.set(name, await OciLayoutSource.open(name, spec));
  }
  return out;
}

function repoOf(name: string): { repo: RepositoryRef; reference: string; display: string } {
  const r = parseReference(name);
  return {
    repo: { registry: registryHost(r), repository: r.repository },
    reference: r.digest ?? r.tag ?? "latest",
    display: formatReference(r),
  };
}

/** The chain ID of each layer (image-spec): identity of a layer together with everything below it. */
export function chainIDs(diffIDs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIDs) {
    const prev = out.at(-1);
    out.push(
      prev === undefined
        ? d
        : "sha256:" + createHash("sha256").update(`${prev} ${d}`).digest("hex"),
    );
  }
  return out;
}

/** The snapshot each layer of a chain is unpacked into (by chain ID: shared by every image). */
export function layerSnapshots(diffIDs: readonly string[]): string[] {
  return chainIDs(diffIDs).map(pulledLayerId);
}

export class Images implements ImagePuller {
  private readonly resolving = new Map<string, Promise<ResolvedImage>>();
  private readonly unpacking = new Map<string, Promise<void>>();
  private readonly documents = new Map<string, Promise<{ digest: string; doc: ParsedDocument }>>();

  constructor(
    private readonly state: KilnState,
    private readonly client: RegistryClient,
    private readonly progress: ProgressSink,
    /** `oci-layout://` build contexts by name */
    private readonly layouts: ReadonlyMap<string, OciLayoutSource> = new Map(),
  ) {}

  /** The manifest and config of `name` for `platform` (BuildKit's `only()` fallbacks apply). */
  resolve(name: string, platform: Platform): Promise<ResolvedImage> {
    const key = `${name} ${formatAll(platform)}`;
    let p = this.resolving.get(key);
    if (!p) {
      p = this.doResolve(name, platform);
      this.resolving.set(key, p);
    }
    return p;
  }

  /**
   * A manifest or index by tag or digest: a tag is asked of the registry once per build (it may
   * have moved, HEAD is enough), and a document the content store already has is not fetched.
   */
  private document(
    repo: RepositoryRef,
    reference: string,
    display: string,
  ): Promise<{ digest: string; doc: ParsedDocument }> {
    const key = `${repo.registry}/${repo.repository}@${reference}`;
    let p = this.documents.get(key);
    if (!p) {
      p = (async () => {
        const desc = isDigest(reference)
          ? { digest: reference, mediaType: undefined }
          : await this.client.resolve(repo, reference);
        if (await this.state.content.has(desc.digest)) {
          const bytes = await this.state.content.readBytes(desc.digest);
          return { digest: desc.digest, doc: parseManifestOrIndex(bytes, desc.mediaType, display) };
        }
        const fetched = await this.client.getManifest(repo, desc.digest);
        await this.state.content.putBytes(fetched.bytes, { digest: desc.digest });
        return { digest: desc.digest, doc: fetched.document };
      })();
      this.documents.set(key, p);
    }
    return p;
  }

  private originOf(name: string): ImageOrigin {
    const contextName = parseLayoutImageName(name)?.context;
    if (contextName === undefined) {
      const { repo, reference, display } = repoOf(name);
      return {
        display,
        reference,
        document: (ref) => this.document(repo, ref, display),
        blob: (desc) => this.client.fetchBlob(repo, desc),
        pinned: (digest) =>
          formatReference(withDigest({ ...parseReference(name), tag: undefined }, digest)),
      };
    }
    const layout = this.layouts.get(contextName);
    if (!layout) {
      throw new KilnError("E_CONTEXT", `build context ${contextName} was not provided`, {
        hint: `pass it with --build-context ${contextName}=oci-layout://DIR`,
      });
    }
    return {
      display: layout.display,
      reference: layout.top.digest,
      document: async (digest) => {
        const mediaType = digest === layout.top.digest ? layout.top.mediaType : undefined;
        if (!(await this.state.content.has(digest))) {
          await this.state.content.putBytes(await layout.readDocument(digest), { digest });
        }
        const bytes = await this.state.content.readBytes(digest);
        return { digest, doc: parseManifestOrIndex(bytes, mediaType, layout.display) };
      },
      blob: (desc) => layout.openBlob(desc),
      pinned: (digest) => layoutImageName(contextName, digest),
    };
  }

  private async doResolve(name: string, platform: Platform): Promise<ResolvedImage> {
    const origin = this.originOf(name);
    const display = origin.display;
    const { digest: topDigest, doc: top } = await origin.document(origin.reference);
    let manifestDigest = topDigest;
    let manifest: ImageManifest;
    if (top.kind === "index") {
      const desc = selectPlatform(top.index, normalize(platform), display);
      const { doc: child } = await origin.document(desc.digest);
      if (child.kind !== "manifest") {
        throw new KilnError(
          "E_MANIFEST_INVALID",
          `${display}: the manifest for ${formatAll(platform)} is a nested index`,
        );
      }
      manifestDigest = desc.digest;
      manifest = child.manifest;
    } else {
      manifest = top.manifest;
    }
    const configDesc = manifest.config;
    if (!(await this.state.content.has(configDesc.digest))) {
      await this.state.content.ingest(origin.blob(configDesc), {
        digest: configDesc.digest,
        size: configDesc.size,
      });
    }
    const config = parseConfig(
      await this.state.content.readBytes(configDesc.digest),
      `${display} config`,
    );
    return {
      ref: origin.pinned(manifestDigest),
      manifestDigest,
      resolvedDigest: topDigest,
      config,
    };
  }

  /** The image's layers as committed snapshots, unpacking (and fetching) what is missing. */
  async pull(v: Vertex, signal: AbortSignal): Promise<LayerRecord[]> {
    if (v.op.kind !== "image") throw new KilnError("E_INTERNAL", "pull of a non-image vertex");
    const origin = this.originOf(v.op.ref);
    const manifest = parseManifest(
      await this.state.content.readBytes(v.op.manifestDigest),
      undefined,
      v.op.ref,
    );
    const config = parseConfig(
      await this.state.content.readBytes(manifest.config.digest),
      `${v.op.ref} config`,
    );
    const diffIDs = config.rootfs.diff_ids;
    if (diffIDs.length !== manifest.layers.length) {
      throw new KilnError(
        "E_MANIFEST_INVALID",
        `${v.op.ref}: manifest lists ${manifest.layers.length} layers but its config ${diffIDs.length} diff_ids`,
      );
    }
    const layers = await this.unpackLayers(
      v,
      manifest.layers.map((desc, i) => ({ desc, diffID: diffIDs[i]! })),
      (desc) => origin.blob(desc),
      signal,
    );
    return layers.map((snapshot, i) => {
      const desc = manifest.layers[i]!;
      return {
        snapshot,
        blob: {
          digest: desc.digest,
          size: desc.size,
          mediaType: desc.mediaType,
          diffID: diffIDs[i]!,
        },
      };
    });
  }

  /**
   * Unpacks a chain of layer blobs (bottom first) into snapshots named by chain ID — shared by
   * base images and imported build cache — fetching blobs the content store lacks with `fetch`.
   * Returns the snapshot of each layer.
   */
  async unpackLayers(
    v: Vertex,
    layers: readonly { desc: Descriptor; diffID: string }[],
    fetch: (desc: Descriptor) => Readable,
    signal: AbortSignal,
  ): Promise<string[]> {
    const names = layerSnapshots(layers.map((l) => l.diffID));
    // With overlayfs the layers download and unpack all at once (each is a directory of its
    // own) and are committed bottom first; the copy driver makes each on the one below it.
    const apart = await this.state.snapshots.layersApart();
    let below: Promise<void> = Promise.resolve();
    const unpacked: Promise<void>[] = [];
    for (let i = 0; i < layers.length; i++) {
      signal.throwIfAborted();
      const { desc, diffID } = layers[i]!;
      const snapshot = names[i]!;
      const parents = names.slice(0, i);
      const parentsCommitted = below;
      below = this.unpackOnce(snapshot, () =>
        this.unpack(v, () => fetch(desc), desc, diffID, snapshot, parents, parentsCommitted),
      );
      unpacked.push(below);
      if (!apart) await below;
    }
    // every layer has stopped before a failure is reported (none is left writing)
    const failed = (await Promise.allSettled(unpacked)).find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return names;
  }

  private unpackOnce(snapshot: string, fn: () => Promise<void>): Promise<void> {
    let p = this.unpacking.get(snapshot);
    if (!p) {
      p = fn();
      this.unpacking.set(snapshot, p);
      p.catch(() => this.unpacking.delete(snapshot));
    }
    return p;
  }

  private async unpack(
    v: Vertex,
    fetch: () => Readable,
    desc: { digest: string; size: number; mediaType: string },
    diffID: string,
    snapshot: string,
    parents: string[],
    /** resolves once every parent is committed (a layer is never committed above a gap) */
    parentsCommitted: Promise<void>,
  ): Promise<void> {
    const snapshots = this.state.snapshots;
    if (await snapshots.exists(snapshot)) return;
    const stored = await this.state.content.has(desc.digest);
    const active = await snapshots.newEmpty(stepSnapshotId("unpack", snapshot), parents);
    try {
      // a blob being downloaded is unpacked as it arrives; the snapshot is committed only
      // once the store has verified and kept the whole blob
      const apply = (blob: AsyncIterable<Uint8Array>) =>
        unpackLayerBlob(blob, desc.mediaType, active.dir, {
          expectedDiffID: diffID,
          blobSize: desc.size,
          whiteouts: active.whiteouts === "overlay" ? "overlay" : "delete",
        });
      if (stored) await apply(this.state.content.openRead(desc.digest));
      else await this.download(v, fetch(), desc, apply);
      await parentsCommitted;
      await snapshots.commit(active.id, active, snapshot);
    } catch (e) {
      await active.release();
      // another kiln process committed the same layer first: theirs is as good as ours
      if ((e as KilnError).code === "E_SNAPSHOT_EXISTS" && (await snapshots.exists(snapshot)))
        return;
      throw e;
    }
  }

  /**
   * Stores a blob from the registry and hands the same bytes to `use` as they arrive; resolves
   * when both are done, with the first failure of either (the store's digest check included).
   */
  private async download(
    v: Vertex,
    blob: Readable,
    desc: { digest: string; size: number },
    use: (blob: AsyncIterable<Uint8Array>) => Promise<unknown>,
  ): Promise<void> {
    const id = `pulling ${desc.digest}`;
    const started = Date.now();
    let done = 0;
    const toStore = new PassThrough();
    const toUse = new PassThrough();
    blob.on("data", (c: Buffer) => {
      done += c.length;
      this.progress.write({
        type: "status",
        vertex: v.digest,
        id,
        current: done,
        total: desc.size,
        started,
      });
    });
    blob.on("error", (e) => {
      toStore.destroy(e);
      toUse.destroy(e);
    });
    // The failure reaches the caller through the two promises below. A copy whose consumer
    // has not started yet (or has stopped) would otherwise have no listener for it, and an
    // 'error' without one ends the process.
    for (const copy of [toStore, toUse]) copy.on("error", () => undefined);
    blob.pipe(toStore);
    blob.pipe(toUse);
    const [stored, used] = await Promise.allSettled([
      this.state.content.ingest(toStore, { digest: desc.digest, size: desc.size }),
      use(toUse).finally(() => {
        // a consumer that stopped early must not hold the download back
        if (!toUse.readableEnded) toUse.resume();
      }),
    ]);
    if (stored.status === "rejected") throw stored.reason;
    if (used.status === "rejected") throw used.reason;
    this.progress.write({
      type: "status",
      vertex: v.digest,
      id,
      current: desc.size,
      total: desc.size,
      started,
      completed: Date.now(),
    });
  }
}
