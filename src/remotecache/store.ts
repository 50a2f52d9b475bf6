/**
 * Where a cache lives: a registry repository (a tag holding a cache index or manifest) or a
 * local OCI layout directory (index.json names the cache with a ref-name annotation). Both
 * give the same two views: read the root document and blobs, write blobs and the root.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { ContentStore, refNameAnnotation } from "../content/index.js";
import { KilnError } from "../errors.js";
import { digestOf, encodeJSON, type Descriptor } from "../oci/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import { mapLimit, type RegistryClient, type RepositoryRef } from "../registry/index.js";

/** A cache as a reader sees it. */
export interface CacheSource {
  /** for messages */
  readonly name: string;
  /** the repository blobs can be mounted from (registry sources only) */
  readonly repo?: RepositoryRef;
  /** the root document (index or manifest), or undefined when there is none */
  root(): Promise<{ bytes: Buffer; mediaType: string | undefined } | undefined>;
  /** a manifest the root lists (an image index's platform manifests) */
  manifest(digest: string): Promise<Buffer>;
  readBlob(desc: Descriptor): Promise<Buffer>;
  openBlob(desc: Descriptor): Readable;
}

/** A cache as an exporter sees it. */
export interface CacheTarget {
  readonly name: string;
  readonly repo?: RepositoryRef;
  /** puts every blob (opened on demand: one that is already there is neither read nor sent) */
  putBlobs(
    blobs: readonly { desc: Descriptor; open: () => Readable }[],
    mountFrom: readonly string[],
  ): Promise<void>;
  /** writes the root document under the cache's tag, or untagged (by digest) */
  putRoot(bytes: Buffer, mediaType: string, untagged?: boolean): Promise<Descriptor>;
}

function repoOf(ref: string): { repo: RepositoryRef; reference: string } {
  const r = parseReference(ref);
  return {
    repo: { registry: registryHost(r), repository: r.repository },
    reference: r.digest ?? r.tag ?? "latest",
  };
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function registrySource(client: RegistryClient, ref: string): CacheSource {
  const { repo, reference } = repoOf(ref);
  return {
    name: ref,
    repo,
    async root() {
      try {
        const m = await client.getManifest(repo, reference);
        return { bytes: m.bytes, mediaType: m.descriptor.mediaType };
      } catch (e) {
        if (e instanceof KilnError && e.code === "E_MANIFEST_UNKNOWN") return undefined;
        throw e;
      }
    },
    manifest: async (digest) => (await client.getManifest(repo, digest)).bytes,
    readBlob: (desc) => readAll(client.fetchBlob(repo, desc)),
    openBlob: (desc) => client.fetchBlob(repo, desc),
  };
}

export function registryTarget(client: RegistryClient, ref: string): CacheTarget {
  const { repo, reference } = repoOf(ref);
  return {
    name: ref,
    repo,
    async putBlobs(blobs, mountFrom) {
      await mapLimit(blobs, client.maxConcurrency, async (b) => {
        await client.pushBlob(repo, b.desc, b.open, { mountFrom });
      });
    },
    async putRoot(bytes, mediaType, untagged) {
      return client.putManifest(repo, untagged ? digestOf(bytes) : reference, bytes, mediaType);
    },
  };
}

/** A local cache directory; one without index.json reads as an empty cache (nothing is created). */
export async function localSource(
  dir: string,
  tag: string,
  digest: string | undefined,
): Promise<CacheSource> {
  const exists = await access(join(dir, "index.json")).then(
    () => true,
    () => false,
  );
  const store = exists ? await ContentStore.open(dir) : undefined;
  return {
    name: dir,
    async root() {
      if (!store) return undefined;
      const index = await store.readIndex();
      const desc = digest
        ? { digest, mediaType: undefined }
        : index.manifests.find((m) => m.annotations?.[refNameAnnotation] === tag);
      if (!desc || !(await store.has(desc.digest))) return undefined;
      return { bytes: await store.readBytes(desc.digest), mediaType: desc.mediaType };
    },
    manifest: (digest) => store!.readBytes(digest),
    readBlob: (desc) => store!.readBytes(desc.digest),
    openBlob: (desc) => store!.openRead(desc.digest),
  };
}

export async function localTarget(dir: string, tag: string): Promise<CacheTarget> {
  const store = await ContentStore.open(dir);
  return {
    name: dir,
    async putBlobs(blobs) {
      await mapLimit(blobs, 4, async (b) => {
        if (!(await store.has(b.desc.digest)))
          await store.ingest(b.open(), { digest: b.desc.digest, size: b.desc.size });
      });
    },
    async putRoot(bytes, mediaType) {
      const info = await store.putBytes(bytes);
      const desc = { mediaType, digest: info.digest, size: info.size };
      await store.addToIndex(desc, tag);
      return desc;
    },
  };
}

/** Writes a JSON document as a blob of the target (the cache config). */
export async function putJSONBlob(
  target: CacheTarget,
  value: unknown,
  mediaType: string,
): Promise<Descriptor> {
  const bytes = encodeJSON(value);
  const desc: Descriptor = { mediaType, digest: digestOf(bytes), size: bytes.byteLength };
  await target.putBlobs([{ desc, open: () => Readable.from([bytes]) }], []);
  return desc;
}
