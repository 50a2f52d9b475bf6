/**
 * Whole-image transfers between a registry and the content store: pull (optionally one
 * platform of an index) and push (blobs deduplicated and in parallel, children before parents).
 */
import type { Readable } from "node:stream";
import type { ContentStore } from "../content/store.js";
import { isKilnError } from "../errors.js";
import { isIndexType } from "../oci/mediatypes.js";
import { parseManifestOrIndex } from "../oci/parse.js";
import type { Descriptor, Digest } from "../oci/types.js";
import type { Platform } from "../platform/types.js";
import {
  formatRef,
  type FetchedManifest,
  type RegistryClient,
  type RepositoryRef,
} from "./client.js";
import { selectPlatform } from "./select.js";

export interface PullResult {
  /** What the reference resolved to (an index or a manifest). */
  root: Descriptor;
  /** The image manifests now complete in the store (one when a platform was selected). */
  manifests: Descriptor[];
}

/**
 * Copy an image into the store. With `platform`, an index contributes only its best match
 * (BuildKit's fallbacks apply); without, every manifest it lists. Blobs already present are
 * not fetched again.
 */
export async function pullImage(
  client: RegistryClient,
  store: ContentStore,
  repo: RepositoryRef,
  reference: string,
  opts: { platform?: Platform } = {},
): Promise<PullResult> {
  const top = await client.getManifest(repo, reference);
  await store.putBytes(top.bytes, { digest: top.descriptor.digest });
  let children: Descriptor[];
  if (top.document.kind === "index") {
    children =
      opts.platform === undefined
        ? top.document.index.manifests.filter((d) => !isIndexType(d.mediaType))
        : [selectPlatform(top.document.index, opts.platform, formatRef(repo, reference))];
  } else {
    children = [];
  }
  const manifests: Descriptor[] = top.document.kind === "manifest" ? [top.descriptor] : [];
  const blobs = new Map<Digest, Descriptor>();
  const collect = (doc: ReturnType<typeof parseManifestOrIndex>): void => {
    if (doc.kind !== "manifest") return;
    for (const d of [doc.manifest.config, ...doc.manifest.layers]) blobs.set(d.digest, d);
  };
  collect(top.document);
  const fetched = new Array<FetchedManifest>(children.length);
  await mapLimit([...children.keys()], client.maxConcurrency, async (i) => {
    const desc = children[i]!;
    const child = await client.getManifest(repo, desc.digest);
    await store.putBytes(child.bytes, { digest: desc.digest, size: desc.size });
    fetched[i] = child;
  });
  // In index order, whatever order the fetches finished in.
  for (const [i, child] of fetched.entries()) {
    manifests.push({ ...children[i]!, mediaType: child.descriptor.mediaType });
    collect(child.document);
  }
  await mapLimit([...blobs.values()], client.maxConcurrency, async (desc) => {
    if (await store.has(desc.digest)) return;
    await store.ingest(client.fetchBlob(repo, desc), { digest: desc.digest, size: desc.size });
  });
  return { root: top.descriptor, manifests };
}

export interface PushOptions {
  mountFrom?: readonly string[];
  /**
   * blobs the caller made just now and the store holds (a build's provenance statements):
   * uploaded without asking first, as a registry is not expected to have them (a third round
   * trip saved; one that is there is only sent again)
   */
  fresh?: ReadonlySet<Digest>;
  /** where a blob the store lacks is read from (a remote build cache) */
  openMissing?: (desc: Descriptor) => Readable;
}

/** A blob this small is pushed with the manifests' parallelism (RegistryClient.smallConcurrency). */
const SMALL_BLOB_BYTES = 64 * 1024;

/**
 * Push an image (manifest or index) from the store. Every distinct blob is sent once even when
 * several platforms share it; blobs another repository of the same registry has can be mounted
 * from `mountFrom`. Child manifests go up by digest before the index that lists them, and the
 * root last under each tag (by digest when no tag is given). Returns the root descriptor.
 */
export async function pushImage(
  client: RegistryClient,
  store: ContentStore,
  root: Descriptor,
  repo: RepositoryRef,
  tags: readonly string[],
  opts: PushOptions = {},
): Promise<Descriptor> {
  try {
    return await pushImageOnce(client, store, root, repo, tags, opts);
  } catch (e) {
    // a blob recorded as pushed is gone (the record of the repository is forgotten by now)
    if (isKilnError(e) && e.code === "E_MANIFEST_BLOB_UNKNOWN")
      return pushImageOnce(client, store, root, repo, tags, opts);
    throw e;
  }
}

async function pushImageOnce(
  client: RegistryClient,
  store: ContentStore,
  root: Descriptor,
  repo: RepositoryRef,
  tags: readonly string[],
  opts: PushOptions,
): Promise<Descriptor> {
  // Every tag already names this root: the registry holds it and all it references (a
  // registry accepts a manifest only when what it lists is there), so one HEAD is the push.
  // Asked while the blobs go up: a root that is new (a build's provenance makes one each
  // time) would otherwise wait a round trip for the answer.
  const tagged = // never rejects: a failed lookup means "push it all"
    tags.length > 0 ? allTagged(client, repo, tags, root.digest) : Promise.resolve(false);
  const blobs = new Map<Digest, Descriptor>();
  // Post-order: a manifest appears after everything it references; its height (0 for an
  // image manifest, 1 + its children's for an index) says which can go up together.
  const manifests: { desc: Descriptor; bytes: Buffer; height: number }[] = [];
  const heights = new Map<Digest, number>();
  const walk = async (desc: Descriptor): Promise<number> => {
    const known = heights.get(desc.digest);
    if (known !== undefined) return known;
    heights.set(desc.digest, 0);
    const bytes = await store.readBytes(desc.digest);
    const doc = parseManifestOrIndex(bytes, desc.mediaType, `${store.root}@${desc.digest}`);
    let height = 0;
    if (doc.kind === "index") {
      for (const child of doc.index.manifests) height = Math.max(height, 1 + (await walk(child)));
    } else {
      for (const d of [doc.manifest.config, ...doc.manifest.layers]) blobs.set(d.digest, d);
    }
    heights.set(desc.digest, height);
    manifests.push({ desc, bytes, height });
    return height;
  };
  await walk(root);
  const pushBlob = async (desc: Descriptor): Promise<void> => {
    const missing =
      opts.openMissing && !(await store.has(desc.digest)) ? opts.openMissing : undefined;
    const open = missing ? () => missing(desc) : () => store.openRead(desc.digest);
    await client.pushBlob(repo, desc, open, {
      mountFrom: opts.mountFrom,
      fresh: !missing && opts.fresh?.has(desc.digest),
    });
  };
  // configs and statements go up beside the layers, many at once
  const small = [...blobs.values()].filter((d) => d.size <= SMALL_BLOB_BYTES);
  const large = [...blobs.values()].filter((d) => d.size > SMALL_BLOB_BYTES);
  await Promise.all([
    mapLimit(small, client.smallConcurrency, pushBlob),
    mapLimit(large, client.maxConcurrency, pushBlob),
  ]);
  if (await tagged) return root;
  // by digest, a level at a time: a platform's image and attestation manifests go up together
  const children = manifests.slice(0, -1);
  for (let h = 0; children.some((m) => m.height >= h); h++) {
    await mapLimit(
      children.filter((m) => m.height === h),
      client.smallConcurrency,
      async (m) => {
        await client.putManifest(repo, m.desc.digest, m.bytes, m.desc.mediaType);
      },
    );
  }
  const top = manifests[manifests.length - 1]!;
  if (tags.length === 0) return client.putManifest(repo, root.digest, top.bytes, root.mediaType);
  let pushed = root;
  for (const tag of tags) pushed = await client.putManifest(repo, tag, top.bytes, root.mediaType);
  return pushed;
}

async function allTagged(
  client: RegistryClient,
  repo: RepositoryRef,
  tags: readonly string[],
  digest: Digest,
): Promise<boolean> {
  for (const tag of tags) {
    // a missing tag (or any error) just means: push it all
    const d = await client.resolve(repo, tag, { forPush: true }).catch(() => undefined);
    if (d?.digest !== digest) return false;
  }
  return true;
}

/** Run `fn` over `items` with at most `limit` in flight; the first failure rejects. */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
