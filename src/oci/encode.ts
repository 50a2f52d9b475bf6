import { createHash } from "node:crypto";
import type { Descriptor, Digest } from "./types.js";

/**
 * Serialise a document to the bytes kiln stores and sends. Keys keep the order in which the
 * builders construct objects (JSON.stringify preserves insertion order; undefined members are
 * dropped), so equal inputs give equal bytes. `indent` 2 is used for manifests and indexes, as
 * BuildKit writes them (readable in `skopeo inspect --raw`); configs are compact. No trailing
 * newline. A digest is always computed from these exact bytes, never from a re-encoding.
 */
export function encodeJSON(value: unknown, indent: 0 | 2 = 0): Buffer {
  const text = JSON.stringify(value, null, indent === 0 ? undefined : indent);
  return Buffer.from(text.replace(GO_ESCAPED, goEscape), "utf8");
}

/**
 * Go's encoding/json escapes these inside strings (HTML safety, JavaScript line separators);
 * writing them the same way keeps config and manifest bytes, and so digests, equal to BuildKit's.
 * They can only occur inside strings, so a plain replacement is exact.
 */
const GO_ESCAPED = /[<>&\u2028\u2029]/g;

function goEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

export function digestOf(bytes: Uint8Array): Digest {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

const digestPattern = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const sha256Pattern = /^sha256:[a-f0-9]{64}$/;
const sha512Pattern = /^sha512:[a-f0-9]{128}$/;

/** True for a well-formed digest; the registered algorithms must have their exact hex length. */
export function isDigest(s: string): boolean {
  if (!digestPattern.test(s)) return false;
  if (s.startsWith("sha256:")) return sha256Pattern.test(s);
  if (s.startsWith("sha512:")) return sha512Pattern.test(s);
  return true;
}

/** The hex part of a sha256 digest (throws on anything else: kiln stores only sha256). */
export function sha256Hex(digest: Digest): string {
  if (!sha256Pattern.test(digest)) throw new TypeError(`not a sha256 digest: ${digest}`);
  return digest.slice("sha256:".length);
}

/** A descriptor for bytes already encoded, with its exact digest and size. */
export function describe(
  bytes: Uint8Array,
  mediaType: string,
  extra: Omit<Descriptor, "mediaType" | "digest" | "size"> = {},
): Descriptor {
  return { mediaType, digest: digestOf(bytes), size: bytes.byteLength, ...extra };
}

/** Encode a document and describe it in one step: the pair is what gets stored and referenced. */
export function toBlob(
  doc: unknown,
  mediaType: string,
  indent: 0 | 2 = 2,
): { bytes: Buffer; descriptor: Descriptor } {
  const bytes = encodeJSON(doc, indent);
  return { bytes, descriptor: describe(bytes, mediaType) };
}
