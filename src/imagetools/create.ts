/**
 * `kiln imagetools create`: resolve the sources, merge them (merge.ts), make every listed
 * manifest exist in each target repository (blobs cross-repository mounted, manifests copied by
 * digest) and push the new index under each tag.
 */
import { KilnError } from "../errors.js";
import { isDigest } from "../oci/encode.js";
import type { Descriptor } from "../oci/types.js";
import type { Platform } from "../platform/types.js";
import { formatReference, parseReference, type Reference } from "../reference/index.js";
import { formatRef, mapLimit, type RegistryClient, type RepositoryRef } from "../registry/index.js";
import { fetchConfig } from "./fetch.js";
import {
  mergeSources,
  platformFromConfig,
  type AnnotationSpec,
  type MergeSource,
} from "./merge.js";

export interface CreateRequest {
  /** Where the new index goes (`-t`); the first is the one `append` extends. */
  tags: readonly string[];
  /** Image references (tag or digest) or bare digests in the target repository. */
  sources: readonly string[];
  /** Start from the manifests of the index the first tag points at. */
  append?: boolean;
  /** Build the index but push nothing. */
  dryRun?: boolean;
  annotations?: readonly AnnotationSpec[];
  platforms?: readonly Platform[];
  /** Progress lines ("copying …", "pushing …"). */
  log?: (line: string) => void;
}

export interface CreateResult {
  bytes: Buffer;
  descriptor: Descriptor;
  /** The references pushed (`registry/repo:tag`), empty for a dry run. */
  pushed: string[];
}

interface ResolvedSource {
  repo: RepositoryRef;
  source: MergeSource;
}

/** Merge the sources into one index and push it to every tag (see CreateRequest). */
export async function createImage(
  client: RegistryClient,
  req: CreateRequest,
): Promise<CreateResult> {
  const log = req.log ?? (() => undefined);
  const targets = req.tags.map(parseTarget);
  if (req.sources.length === 0 && !req.append) {
    throw usage(
      "no sources specified",
      "name the images to merge, e.g. reg/app@sha256:… reg/app:arm64",
    );
  }
  if (targets.length === 0 && !req.dryRun) {
    throw usage("no target to push to", "set --tag (-t), or use --dry-run to only print the index");
  }
  if (req.append && targets.length === 0) {
    throw usage("--append needs a --tag", "--append adds to the index the first -t names");
  }
  const sourceRefs = req.sources.map((s) => parseSource(s, targets));
  if (req.append) sourceRefs.unshift(targets[0]!);
  checkOneRegistry([...targets, ...sourceRefs]);

  const resolved = new Array<ResolvedSource>(sourceRefs.length);
  await mapLimit([...sourceRefs.keys()], client.maxConcurrency, async (i) => {
    try {
      resolved[i] = await resolveSource(client, sourceRefs[i]!);
    } catch (e) {
      if (req.append && i === 0 && e instanceof KilnError && e.code === "E_MANIFEST_UNKNOWN") {
        throw new KilnError(
          "E_MANIFEST_UNKNOWN",
          `--append: ${formatReference(targets[0]!)} does not exist yet`,
          { hint: "drop --append to create it from the sources alone", cause: e },
        );
      }
      throw e;
    }
  });
  const merged = mergeSources(
    resolved.map((r) => r.source),
    { annotations: req.annotations, platforms: req.platforms },
  );
  if (req.dryRun) return { bytes: merged.bytes, descriptor: merged.descriptor, pushed: [] };

  // Where each listed manifest can be read from: the first source that lists it.
  const origin = new Map<string, RepositoryRef>();
  for (const r of resolved) {
    const listed = r.source.kind === "index" ? r.source.index.manifests : [r.source.descriptor];
    for (const d of listed) if (!origin.has(d.digest)) origin.set(d.digest, r.repo);
  }
  const pushed: string[] = [];
  const prepared = new Set<string>();
  for (const t of targets) {
    const repo = { registry: t.registry, repository: t.repository };
    const key = formatRef(repo);
    if (!prepared.has(key)) {
      await mapLimit(merged.manifests, client.maxConcurrency, async (d) => {
        await copyManifest(client, origin.get(d.digest)!, repo, d, log);
      });
      prepared.add(key);
    }
    log(`pushing ${merged.descriptor.digest} to ${formatReference(t)}`);
    await client.putManifest(repo, t.tag!, merged.bytes, merged.descriptor.mediaType);
    pushed.push(formatReference(t));
  }
  return { bytes: merged.bytes, descriptor: merged.descriptor, pushed };
}

async function resolveSource(client: RegistryClient, ref: Reference): Promise<ResolvedSource> {
  const repo = { registry: ref.registry, repository: ref.repository };
  const fetched = await client.getManifest(repo, ref.digest ?? ref.tag!);
  const doc = fetched.document;
  if (doc.kind === "index") {
    return {
      repo,
      source: {
        kind: "index",
        descriptor: fetched.descriptor,
        index: doc.index,
        bytes: fetched.bytes,
      },
    };
  }
  const config = await fetchConfig(client, repo, doc.manifest);
  const descriptor: Descriptor = { ...fetched.descriptor };
  if (config !== undefined) descriptor.platform = platformFromConfig(config);
  return { repo, source: { kind: "manifest", descriptor } };
}

/**
 * Make `desc` (a manifest or a nested index) exist in `to`: nothing to do when it is there
 * already; else its blobs are mounted from `from` (uploaded only if the registry refuses the
 * mount) and the manifest is put by digest, children before parents.
 */
async function copyManifest(
  client: RegistryClient,
  from: RepositoryRef,
  to: RepositoryRef,
  desc: Descriptor,
  log: (line: string) => void,
): Promise<void> {
  if (from.repository === to.repository) return;
  if (await manifestExists(client, to, desc.digest)) return;
  log(`copying ${desc.digest} from ${formatRef(from)} to ${formatRef(to)}`);
  const m = await client.getManifest(from, desc.digest);
  const doc = m.document;
  if (doc.kind === "index") {
    for (const child of doc.index.manifests) await copyManifest(client, from, to, child, log);
  } else {
    // Foreign layers (with urls) are fetched from elsewhere by clients; registries need not have them.
    const blobs = [doc.manifest.config, ...doc.manifest.layers].filter(
      (b) => b.urls === undefined || b.urls.length === 0,
    );
    await mapLimit(blobs, client.maxConcurrency, async (b) => {
      await client.pushBlob(to, b, () => client.fetchBlob(from, b), {
        mountFrom: [from.repository],
      });
    });
  }
  await client.putManifest(to, desc.digest, m.bytes, m.descriptor.mediaType);
}

async function manifestExists(
  client: RegistryClient,
  repo: RepositoryRef,
  digest: string,
): Promise<boolean> {
  try {
    await client.resolve(repo, digest);
    return true;
  } catch (e) {
    if (e instanceof KilnError && e.code === "E_MANIFEST_UNKNOWN") return false;
    throw e;
  }
}

function parseTarget(tag: string): Reference {
  const ref = parseReference(tag);
  if (ref.digest !== undefined) {
    throw usage(
      `--tag ${tag} has a digest`,
      "a target is a name with a tag (registry/repo:tag); the digest of the new index is computed",
    );
  }
  return ref;
}

/** A source reference; a bare digest means that digest in the (single) target repository. */
function parseSource(source: string, targets: readonly Reference[]): Reference {
  if (!isDigest(source)) return parseReference(source);
  const repos = new Set(targets.map((t) => `${t.registry}/${t.repository}`));
  if (repos.size !== 1) {
    throw usage(
      `cannot tell which repository holds source ${source}`,
      "write the source as registry/repo@sha256:…, or give --tag names in exactly one repository",
    );
  }
  const t = targets[0]!;
  return { registry: t.registry, repository: t.repository, digest: source };
}

function checkOneRegistry(refs: readonly Reference[]): void {
  const registries = [...new Set(refs.map((r) => r.registry))];
  if (registries.length <= 1) return;
  throw new KilnError(
    "E_IMAGETOOLS_REGISTRY",
    `sources and targets are on different registries (${registries.join(", ")}); merging across registries is not supported`,
    {
      hint:
        "kiln imagetools create mounts blobs between repositories of one registry instead of copying them; " +
        `copy the sources into ${registries[0]} first (e.g. skopeo copy --all, or kiln build --push there), then merge them`,
    },
  );
}

function usage(message: string, hint: string): KilnError {
  return new KilnError("E_IMAGETOOLS_USAGE", message, { hint });
}
