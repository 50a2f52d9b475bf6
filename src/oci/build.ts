/**
 * Pure builders in the spirit of go-containerregistry's `mutate`: each returns a new object and
 * never changes its input. Objects are built with keys in canonical order (see `encodeJSON`).
 */
import type { Platform } from "../platform/types.js";
import { MediaType } from "./mediatypes.js";
import { fromPlatform } from "./platform.js";
import type {
  Descriptor,
  Digest,
  HistoryEntry,
  ImageConfig,
  ImageIndex,
  ImageManifest,
} from "./types.js";

/** `{}`: the config of artifacts without one (image-spec "empty descriptor"). */
export const emptyDescriptor: Readonly<Descriptor> = Object.freeze({
  mediaType: MediaType.ociEmpty,
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
  data: "e30=",
});

/** The seed of every multi-platform image: append manifests to it. */
export function emptyIndex(mediaType: string = MediaType.ociIndex): ImageIndex {
  return { schemaVersion: 2, mediaType, manifests: [] };
}

export function appendManifests(index: ImageIndex, descs: readonly Descriptor[]): ImageIndex {
  return { ...index, manifests: [...index.manifests, ...descs] };
}

/**
 * Merge annotations into a manifest, index or descriptor; a key set to `undefined` is removed,
 * and an empty result drops the `annotations` member.
 */
export function setAnnotations<T extends { annotations?: Record<string, string> }>(
  doc: T,
  annotations: Record<string, string | undefined>,
): T {
  const entries = Object.entries({ ...doc.annotations, ...annotations }).filter(
    (e): e is [string, string] => e[1] !== undefined,
  );
  const merged = Object.fromEntries(entries);
  const out = { ...doc };
  if (Object.keys(merged).length === 0) delete out.annotations;
  else out.annotations = merged;
  return out;
}

/** A copy of a descriptor that carries a platform (how an index entry names its platform). */
export function withPlatform(desc: Descriptor, platform: Platform): Descriptor {
  return { ...desc, platform: fromPlatform(platform) };
}

export interface ManifestOptions {
  mediaType?: string;
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An image manifest from its config and layers (OCI media type unless told otherwise). */
export function manifestFor(
  config: Descriptor,
  layers: readonly Descriptor[],
  opts: ManifestOptions = {},
): ImageManifest {
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: opts.mediaType ?? MediaType.ociManifest,
    artifactType: opts.artifactType,
    config,
    layers: [...layers],
    subject: opts.subject,
    annotations: opts.annotations,
  };
  // Drop unset optional members so the object's keys are exactly what gets encoded.
  if (m.artifactType === undefined) delete m.artifactType;
  if (m.subject === undefined) delete m.subject;
  if (m.annotations === undefined) delete m.annotations;
  return m;
}

/** An image config with no layers for a platform (the `FROM scratch` seed). */
export function emptyConfig(platform: Platform): ImageConfig {
  const p = fromPlatform(platform);
  return { ...p, config: {}, rootfs: { type: "layers", diff_ids: [] }, history: [] };
}

/**
 * Record a layer (or, with `diffID` undefined, a metadata-only step) in a config: the diff ID
 * goes to `rootfs.diff_ids`, the history entry gets `empty_layer` for metadata-only steps.
 */
export function appendHistory(
  config: ImageConfig,
  entry: Omit<HistoryEntry, "empty_layer">,
  diffID?: Digest,
): ImageConfig {
  const h: HistoryEntry = diffID === undefined ? { ...entry, empty_layer: true } : { ...entry };
  return {
    ...config,
    rootfs: {
      type: "layers",
      diff_ids:
        diffID === undefined ? [...config.rootfs.diff_ids] : [...config.rootfs.diff_ids, diffID],
    },
    history: [...(config.history ?? []), h],
  };
}
