/**
 * Validation of documents read from disk or a registry. Anything malformed becomes a
 * KilnError E_MANIFEST_INVALID naming the document and the offending member; nothing here throws
 * a raw TypeError on hostile input.
 */
import { KilnError } from "../errors.js";
import { isDigest } from "./encode.js";
import { MediaType, isIndexType, isManifestType } from "./mediatypes.js";
import type { ImageConfig, ImageIndex, ImageManifest } from "./types.js";

type Json = Record<string, unknown>;

class ShapeError extends Error {}

function fail(path: string, problem: string): never {
  throw new ShapeError(`${path}: ${problem}`);
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const mediaTypePattern =
  /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

function checkString(v: unknown, path: string): void {
  if (typeof v !== "string") fail(path, `expected a string, got ${kind(v)}`);
}

function checkOptionalString(o: Json, key: string, path: string): void {
  if (o[key] !== undefined) checkString(o[key], `${path}.${key}`);
}

function checkStringArray(v: unknown, path: string, nullable = false): void {
  if (v === undefined || (nullable && v === null)) return;
  if (!Array.isArray(v)) fail(path, `expected an array of strings, got ${kind(v)}`);
  v.forEach((s, i) => {
    checkString(s, `${path}[${i}]`);
  });
}

function checkStringMap(v: unknown, path: string): void {
  if (v === undefined) return;
  if (!isObject(v)) fail(path, `expected an object of strings, got ${kind(v)}`);
  for (const [k, s] of Object.entries(v)) checkString(s, `${path}["${k}"]`);
}

function checkObjectMap(v: unknown, path: string): void {
  if (v === undefined || v === null) return;
  if (!isObject(v)) fail(path, `expected an object, got ${kind(v)}`);
}

function checkMediaType(v: unknown, path: string): void {
  checkString(v, path);
  if (!mediaTypePattern.test(v as string)) fail(path, `not a media type: ${JSON.stringify(v)}`);
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

function checkDescriptor(v: unknown, path: string): void {
  if (!isObject(v)) fail(path, `expected a descriptor object, got ${kind(v)}`);
  checkMediaType(v.mediaType, `${path}.mediaType`);
  checkString(v.digest, `${path}.digest`);
  if (!isDigest(v.digest as string))
    fail(`${path}.digest`, `not a digest: ${JSON.stringify(v.digest)}`);
  if (typeof v.size !== "number" || !Number.isSafeInteger(v.size) || v.size < 0) {
    fail(`${path}.size`, `expected a non-negative integer, got ${JSON.stringify(v.size)}`);
  }
  checkStringArray(v.urls, `${path}.urls`);
  checkStringMap(v.annotations, `${path}.annotations`);
  checkOptionalString(v, "data", path);
  if (v.artifactType !== undefined) checkMediaType(v.artifactType, `${path}.artifactType`);
  if (v.platform !== undefined) checkPlatform(v.platform, `${path}.platform`);
}

function checkPlatform(v: unknown, path: string): void {
  if (!isObject(v)) fail(path, `expected a platform object, got ${kind(v)}`);
  checkString(v.architecture, `${path}.architecture`);
  checkString(v.os, `${path}.os`);
  checkOptionalString(v, "variant", path);
  checkOptionalString(v, "os.version", path);
  checkStringArray(v["os.features"], `${path}["os.features"]`);
}

function checkSchemaVersion(o: Json): void {
  if (o.schemaVersion !== 2)
    fail("schemaVersion", `expected 2, got ${JSON.stringify(o.schemaVersion)}`);
}

/** The media type a document declares must agree with the one it was served or stored as. */
function checkDeclaredType(
  o: Json,
  mediaType: string | undefined,
  accept: (t: string) => boolean,
): void {
  if (mediaType !== undefined && !accept(mediaType)) fail("mediaType", `unexpected ${mediaType}`);
  if (o.mediaType !== undefined) {
    checkMediaType(o.mediaType, "mediaType");
    if (!accept(o.mediaType as string)) fail("mediaType", `unexpected ${o.mediaType as string}`);
    if (mediaType !== undefined && o.mediaType !== mediaType) {
      fail("mediaType", `document says ${o.mediaType as string} but was served as ${mediaType}`);
    }
  }
}

function parseWith(
  bytes: Uint8Array,
  what: string,
  source: string | undefined,
  check: (o: Json) => void,
): unknown {
  const label = source === undefined ? what : `${what} ${source}`;
  let value: unknown;
  try {
    value = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"),
    );
  } catch (e) {
    throw new KilnError(
      "E_MANIFEST_INVALID",
      `invalid ${label}: not JSON (${(e as Error).message})`,
      {
        hint: "the registry or file returned something that is not an image document; check the reference",
      },
    );
  }
  try {
    if (!isObject(value)) fail("(document)", `expected an object, got ${kind(value)}`);
    check(value);
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    throw new KilnError("E_MANIFEST_INVALID", `invalid ${label}: ${e.message}`, {
      hint: "the document does not follow the OCI image spec; it may be corrupt or of an unsupported type",
    });
  }
  return value;
}

/** Parse an image manifest; `mediaType` is the Content-Type it came with, if known. */
export function parseManifest(
  bytes: Uint8Array,
  mediaType?: string,
  source?: string,
): ImageManifest {
  return parseWith(bytes, "image manifest", source, (o) => {
    checkSchemaVersion(o);
    checkDeclaredType(o, mediaType, isManifestType);
    if (o.artifactType !== undefined) checkMediaType(o.artifactType, "artifactType");
    checkDescriptor(o.config, "config");
    if (!Array.isArray(o.layers)) fail("layers", `expected an array, got ${kind(o.layers)}`);
    o.layers.forEach((l, i) => {
      checkDescriptor(l, `layers[${i}]`);
    });
    if (o.subject !== undefined) checkDescriptor(o.subject, "subject");
    checkStringMap(o.annotations, "annotations");
  }) as ImageManifest;
}

/** Parse an image index (or Docker manifest list). */
export function parseIndex(bytes: Uint8Array, mediaType?: string, source?: string): ImageIndex {
  return parseWith(bytes, "image index", source, (o) => {
    checkSchemaVersion(o);
    checkDeclaredType(o, mediaType, isIndexType);
    if (o.artifactType !== undefined) checkMediaType(o.artifactType, "artifactType");
    if (!Array.isArray(o.manifests))
      fail("manifests", `expected an array, got ${kind(o.manifests)}`);
    o.manifests.forEach((m, i) => {
      checkDescriptor(m, `manifests[${i}]`);
    });
    if (o.subject !== undefined) checkDescriptor(o.subject, "subject");
    checkStringMap(o.annotations, "annotations");
  }) as ImageIndex;
}

export type ParsedDocument =
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest }
  | { kind: "index"; mediaType: string; index: ImageIndex };

/**
 * Parse a manifest or an index. The type comes from `mediaType` (a Content-Type or descriptor),
 * else from the document's own `mediaType`, else from its shape (`manifests` vs `config`).
 */
export function parseManifestOrIndex(
  bytes: Uint8Array,
  mediaType?: string,
  source?: string,
): ParsedDocument {
  let type =
    mediaType !== undefined && (isIndexType(mediaType) || isManifestType(mediaType))
      ? mediaType
      : undefined;
  if (type === undefined) {
    const probe = parseWith(bytes, "image manifest", source, () => undefined) as Json;
    if (typeof probe.mediaType === "string") type = probe.mediaType;
    else type = Array.isArray(probe.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  }
  if (isIndexType(type))
    return { kind: "index", mediaType: type, index: parseIndex(bytes, type, source) };
  if (isManifestType(type)) {
    return { kind: "manifest", mediaType: type, manifest: parseManifest(bytes, type, source) };
  }
  const label = source === undefined ? "" : ` ${source}`;
  throw new KilnError("E_MANIFEST_INVALID", `unsupported manifest media type${label}: ${type}`, {
    hint: "kiln reads OCI and Docker schema 2 manifests and indexes",
  });
}

/** Parse an image config (OCI or Docker). */
export function parseConfig(bytes: Uint8Array, source?: string): ImageConfig {
  return parseWith(bytes, "image config", source, (o) => {
    checkString(o.architecture, "architecture");
    checkString(o.os, "os");
    checkOptionalString(o, "variant", "(config)");
    checkOptionalString(o, "created", "(config)");
    checkOptionalString(o, "author", "(config)");
    if (!isObject(o.rootfs)) fail("rootfs", `expected an object, got ${kind(o.rootfs)}`);
    if (o.rootfs.type !== "layers")
      fail("rootfs.type", `expected "layers", got ${JSON.stringify(o.rootfs.type)}`);
    // Go writes an image without layers as `"diff_ids": null` (BuildKit does, for FROM scratch)
    if (o.rootfs.diff_ids === null) o.rootfs.diff_ids = [];
    if (!Array.isArray(o.rootfs.diff_ids))
      fail("rootfs.diff_ids", `expected an array, got ${kind(o.rootfs.diff_ids)}`);
    o.rootfs.diff_ids.forEach((d, i) => {
      checkString(d, `rootfs.diff_ids[${i}]`);
      if (!isDigest(d as string))
        fail(`rootfs.diff_ids[${i}]`, `not a digest: ${JSON.stringify(d)}`);
    });
    if (o.config !== undefined && o.config !== null) {
      const c = o.config;
      if (!isObject(c)) fail("config", `expected an object, got ${kind(c)}`);
      for (const key of ["User", "WorkingDir", "StopSignal"]) checkOptionalString(c, key, "config");
      checkStringArray(c.Env, "config.Env", true);
      checkStringArray(c.Entrypoint, "config.Entrypoint", true);
      checkStringArray(c.Cmd, "config.Cmd", true);
      checkStringArray(c.Shell, "config.Shell", true);
      checkStringArray(c.OnBuild, "config.OnBuild", true);
      checkStringMap(c.Labels ?? undefined, "config.Labels");
      checkObjectMap(c.ExposedPorts, "config.ExposedPorts");
      checkObjectMap(c.Volumes, "config.Volumes");
    }
    if (o.history !== undefined && o.history !== null) {
      if (!Array.isArray(o.history)) fail("history", `expected an array, got ${kind(o.history)}`);
      o.history.forEach((h, i) => {
        if (!isObject(h)) fail(`history[${i}]`, `expected an object, got ${kind(h)}`);
      });
    }
  }) as ImageConfig;
}
