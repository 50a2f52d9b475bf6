/**
 * Attestations stored as BuildKit stores them (docs/attestations/attestation-storage.md): per
 * platform one attestation manifest, an OCI artifact (`artifactType`
 * application/vnd.docker.attestation.manifest.v1+json, the empty config, `subject` = the
 * platform's image manifest) whose layers are in-toto statements
 * (`application/vnd.in-toto+json`, annotated `in-toto.io/predicate-type`); in the index it is
 * listed after the images with platform unknown/unknown and the `vnd.docker.reference.*`
 * annotations.
 */
import type { DocumentBatch } from "../content/index.js";
import { MediaType, encodeJSON, type Descriptor, type ImageManifest } from "../oci/index.js";
import type { Platform } from "../platform/types.js";
import { imagePurl } from "./purl.js";

export const IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json";
export const IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1";
export const PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type";
export const ATTESTATION_ARTIFACT_TYPE = "application/vnd.docker.attestation.manifest.v1+json";
export const REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type";
export const REFERENCE_DIGEST_ANNOTATION = "vnd.docker.reference.digest";
export const ATTESTATION_REFERENCE_TYPE = "attestation-manifest";

/** True for an index entry that is an attestation manifest (not a runnable image). */
export function isAttestationManifest(d: Descriptor): boolean {
  return d.annotations?.[REFERENCE_TYPE_ANNOTATION] === ATTESTATION_REFERENCE_TYPE;
}

/** One attestation of a platform's result, before it is wrapped in a statement. */
export interface Attestation {
  predicateType: string;
  predicate: unknown;
  /** the file name in local/tar outputs (`provenance.json`, `sbom.spdx.json`) */
  path: string;
  /** only image outputs carry it */
  inlineOnly: boolean;
}

export interface Subject {
  name: string;
  digest: Record<string, string>;
}

export interface Statement {
  _type: string;
  predicateType: string;
  subject: Subject[];
  predicate: unknown;
}

function digestMap(d: string): Record<string, string> {
  const i = d.indexOf(":");
  return { [d.slice(0, i)]: d.slice(i + 1) };
}

/**
 * The statement's subjects for an image, as BuildKit makes them: one purl per image name
 * (`pkg:docker/name@tag?platform=…`) with the manifest digest; no name, no subject.
 */
export function imageSubjects(
  names: readonly string[],
  platform: Platform,
  manifestDigest: string,
): Subject[] {
  return names.map((n) => ({ name: imagePurl(n, platform), digest: digestMap(manifestDigest) }));
}

/** A file's subject (local/tar outputs: every file of the result by its sha256). */
export function fileSubject(path: string, digest: string): Subject {
  return { name: path, digest: digestMap(digest) };
}

export function statementOf(a: Attestation, subject: Subject[]): Statement {
  return {
    _type: IN_TOTO_STATEMENT_V1,
    predicateType: a.predicateType,
    subject,
    predicate: a.predicate,
  };
}

const EMPTY_CONFIG: Descriptor = {
  mediaType: MediaType.ociEmpty,
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
  data: "e30=",
};

export interface StoredAttestations {
  manifest: ImageManifest;
  /** as listed in the index */
  descriptor: Descriptor;
}

/** The statements and their attestation manifest for `target`, put in `docs`. */
export function storeAttestations(
  docs: DocumentBatch,
  target: Descriptor,
  statements: readonly Statement[],
): StoredAttestations {
  const layers = statements.map((s): Descriptor => {
    const info = docs.put(encodeJSON(s));
    return {
      mediaType: IN_TOTO_MEDIA_TYPE,
      digest: info.digest,
      size: info.size,
      annotations: { [PREDICATE_TYPE_ANNOTATION]: s.predicateType },
    };
  });
  docs.put(Buffer.from("{}"));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: ATTESTATION_ARTIFACT_TYPE,
    config: EMPTY_CONFIG,
    layers,
    subject: { mediaType: target.mediaType, digest: target.digest, size: target.size },
  };
  const info = docs.put(encodeJSON(manifest, 2));
  return {
    manifest,
    descriptor: {
      mediaType: MediaType.ociManifest,
      digest: info.digest,
      size: info.size,
      annotations: {
        [REFERENCE_DIGEST_ANNOTATION]: target.digest,
        [REFERENCE_TYPE_ANNOTATION]: ATTESTATION_REFERENCE_TYPE,
      },
      platform: { architecture: "unknown", os: "unknown" },
    },
  };
}
