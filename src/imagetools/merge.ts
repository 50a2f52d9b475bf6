/**
 * The pure part of `kiln imagetools create`: buildx's Combine. Sources (manifests with their
 * platform known, and indexes) become one index: indexes are expanded into their manifests,
 * entries with the same digest are merged (later platform and annotations win), the result is a
 * Docker manifest list when every entry is a Docker type, else an OCI index.
 */
import { REFERENCE_DIGEST_ANNOTATION, isAttestationManifest } from "../attest/index.js";
import { KilnError } from "../errors.js";
import { encodeJSON, describe } from "../oci/encode.js";
import { MediaType, isIndexType } from "../oci/mediatypes.js";
import { fromPlatform, toPlatform } from "../oci/platform.js";
import type { Descriptor, ImageConfig, ImageIndex, OciPlatform } from "../oci/types.js";
import { format, normalize, parse } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

/** Where `--annotation` puts a key: on the new index, or on its manifest descriptors. */
export type AnnotationTarget = "index" | "manifest-descriptor";

export interface AnnotationSpec {
  target: AnnotationTarget;
  /** Only descriptors of this platform (manifest-descriptor[linux/amd64]:k=v). */
  platform?: Platform;
  key: string;
  value: string;
}

/** One resolved source: a manifest (platform filled from its config) or an index. */
export type MergeSource =
  | { kind: "manifest"; descriptor: Descriptor }
  | { kind: "index"; descriptor: Descriptor; index: ImageIndex; bytes: Buffer };

export interface MergeOptions {
  annotations?: readonly AnnotationSpec[];
  /** Keep only manifests of these platforms (and the attestations that refer to them). */
  platforms?: readonly Platform[];
}

export interface MergeResult {
  /** The exact bytes to push, and their descriptor. */
  bytes: Buffer;
  descriptor: Descriptor;
  /** The manifests the result lists (what must exist in the target repository). */
  manifests: Descriptor[];
  /** True when a single index source is passed through unchanged (buildx's carbon copy). */
  carbonCopy: boolean;
}

const referenceDigestKey = REFERENCE_DIGEST_ANNOTATION;

/** Parse `index:k=v`, `manifest-descriptor:k=v` or `manifest-descriptor[os/arch]:k=v`. */
export function parseAnnotation(flag: string): AnnotationSpec {
  const bad = (why: string, hint?: string): KilnError =>
    new KilnError("E_FLAG", `invalid --annotation value ${JSON.stringify(flag)}: ${why}`, {
      hint:
        hint ??
        "write index:KEY=VALUE or manifest-descriptor[:platform]:KEY=VALUE, e.g. index:org.opencontainers.image.source=https://…",
    });
  const eq = flag.indexOf("=");
  if (eq < 0) throw bad("expected TYPE:KEY=VALUE");
  const lhs = flag.slice(0, eq);
  const value = flag.slice(eq + 1);
  const m = /^([a-z-]+)(?:\[([^\]]+)\])?:(.+)$/.exec(lhs);
  if (m === null) {
    throw bad(
      "the annotation type is missing",
      "imagetools create only sets index: and manifest-descriptor: annotations; prefix the key with one of them",
    );
  }
  const [, type, platform, key] = m;
  if (type !== "index" && type !== "manifest-descriptor") {
    const why =
      type === "manifest" || type === "index-descriptor"
        ? `${type} annotations cannot be set when merging (the manifests are copied unchanged)`
        : `unknown annotation type ${JSON.stringify(type)}`;
    throw bad(why, "use index: or manifest-descriptor:");
  }
  if (type === "index" && platform !== undefined)
    throw bad("index annotations take no platform", "write index:KEY=VALUE");
  const spec: AnnotationSpec = { target: type, key: key!, value };
  if (platform !== undefined) spec.platform = normalize(parse(platform));
  return spec;
}

/**
 * A descriptor's platform from its image config, as buildx fills it: normalized, OS, architecture
 * and variant only; what the descriptor already says wins.
 */
export function platformFromConfig(config: ImageConfig, existing?: OciPlatform): OciPlatform {
  const fromConfig = normalize({
    os: config.os,
    architecture: config.architecture,
    ...(config.variant ? { variant: config.variant } : {}),
  });
  const p: Platform = existing === undefined ? { os: "", architecture: "" } : toPlatform(existing);
  if (p.architecture === "") {
    p.architecture = fromConfig.architecture;
    if (p.variant === undefined && fromConfig.variant !== undefined) p.variant = fromConfig.variant;
  }
  if (p.os === "") p.os = fromConfig.os;
  return fromPlatform(p);
}

/** Merge sources into one index (or pass a lone index through unchanged). */
export function mergeSources(
  sources: readonly MergeSource[],
  opts: MergeOptions = {},
): MergeResult {
  const annotations = opts.annotations ?? [];
  const filter = opts.platforms ?? [];
  if (sources.length === 0) {
    throw new KilnError("E_IMAGETOOLS_USAGE", "no sources to merge", {
      hint: "name at least one source image (a tag or a digest)",
    });
  }
  const only = sources[0]!;
  if (
    sources.length === 1 &&
    only.kind === "index" &&
    annotations.length === 0 &&
    filter.length === 0
  ) {
    return {
      bytes: only.bytes,
      descriptor: {
        mediaType: only.descriptor.mediaType,
        digest: only.descriptor.digest,
        size: only.descriptor.size,
      },
      manifests: only.index.manifests,
      carbonCopy: true,
    };
  }

  const byDigest = new Map<string, Descriptor>();
  const add = (d: Descriptor): void => {
    const old = byDigest.get(d.digest);
    if (old === undefined) {
      byDigest.set(d.digest, { ...d });
      return;
    }
    const merged: Descriptor = { ...old };
    if (d.platform !== undefined) merged.platform = d.platform;
    if (d.annotations !== undefined) merged.annotations = { ...old.annotations, ...d.annotations };
    byDigest.set(d.digest, merged);
  };
  for (const s of sources) {
    if (s.kind === "index") for (const d of s.index.manifests) add(d);
    else add(s.descriptor);
  }
  let manifests = [...byDigest.values()];
  if (filter.length > 0) manifests = filterPlatforms(manifests, filter);
  if (manifests.length === 0) {
    throw new KilnError(
      "E_PLATFORM_NOT_FOUND",
      `no source manifest matches --platform ${filter.map(format).join(", ")}`,
      { hint: "check the platforms of the sources with kiln imagetools inspect" },
    );
  }

  const docker = manifests.every((d) => d.mediaType.startsWith("application/vnd.docker."));
  const mediaType = docker ? MediaType.dockerManifestList : MediaType.ociIndex;
  const indexAnnotations: Record<string, string> = {};
  for (const a of annotations) {
    if (docker) {
      throw new KilnError(
        "E_IMAGETOOLS_ANNOTATION",
        "annotations need an OCI index, but every source is a Docker manifest, so the result is a Docker manifest list",
        { hint: "drop --annotation, or merge OCI images (kiln build pushes OCI by default)" },
      );
    }
    if (a.target === "index") {
      indexAnnotations[a.key] = a.value;
      continue;
    }
    const want = a.platform === undefined ? undefined : format(a.platform);
    manifests = manifests.map((d) =>
      want === undefined || (d.platform !== undefined && platformKey(d.platform) === want)
        ? { ...d, annotations: { ...d.annotations, [a.key]: a.value } }
        : d,
    );
  }

  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType,
    manifests: manifests.map(canonicalDescriptor),
  };
  if (Object.keys(indexAnnotations).length > 0) index.annotations = sortedMap(indexAnnotations);
  const bytes = encodeJSON(index, 2);
  return {
    bytes,
    descriptor: describe(bytes, mediaType),
    manifests: index.manifests,
    carbonCopy: false,
  };
}

/** `os/arch[/variant]` of a descriptor platform, normalized (arm64/v8 → linux/arm64). */
export function platformKey(p: OciPlatform): string {
  return format(normalize(toPlatform(p)));
}

/**
 * Manifests whose normalized platform is one of `platforms`, plus the attestation manifests
 * that describe a kept manifest; nested indexes and entries without a platform are dropped.
 */
function filterPlatforms(descs: Descriptor[], platforms: readonly Platform[]): Descriptor[] {
  const wanted = new Set(platforms.map((p) => format(normalize(p))));
  const kept = new Set(
    descs
      .filter(
        (d) =>
          !isAttestationManifest(d) &&
          !isIndexType(d.mediaType) &&
          d.platform !== undefined &&
          wanted.has(platformKey(d.platform)),
      )
      .map((d) => d.digest),
  );
  return descs.filter(
    (d) =>
      kept.has(d.digest) ||
      (isAttestationManifest(d) && kept.has(d.annotations?.[referenceDigestKey] ?? "")),
  );
}

/**
 * A descriptor with members in the order Go's image-spec types marshal them and annotations
 * sorted, so a merge of the same inputs gives the same bytes as buildx.
 */
function canonicalDescriptor(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls !== undefined && d.urls.length > 0) out.urls = [...d.urls];
  if (d.annotations !== undefined && Object.keys(d.annotations).length > 0)
    out.annotations = sortedMap(d.annotations);
  if (d.data !== undefined) out.data = d.data;
  if (d.platform !== undefined) out.platform = fromPlatform(toPlatform(d.platform));
  if (d.artifactType !== undefined) out.artifactType = d.artifactType;
  return out;
}

function sortedMap(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
