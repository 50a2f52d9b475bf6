/**
 * Which attestations a build makes (the CLI parses buildx's flags into this, see
 * cli/attest-flags.ts): SLSA provenance and an SBOM, with BuildKit's attributes.
 */
export type SlsaVersion = "v1" | "v0.2";

export interface ProvenanceRequest {
  mode: "min" | "max";
  version: SlsaVersion;
  builderId?: string;
  reproducible: boolean;
  /** only images (registry, store, oci/docker layouts) carry it, not local/tar files */
  inlineOnly: boolean;
  /** file name in local/tar outputs */
  filename: string;
}

export interface SbomRequest {
  /** file name of the final image's SBOM in local/tar outputs */
  filename: string;
}

/** The attestations a build asks for (none when a field is absent). */
export interface AttestRequest {
  provenance?: ProvenanceRequest;
  sbom?: SbomRequest;
}

/** True when the request makes any attestation. */
export function wantsAttestations(r: AttestRequest | undefined): r is AttestRequest {
  return r !== undefined && (r.provenance !== undefined || r.sbom !== undefined);
}

/**
 * The request narrowed to what the outputs can carry: inline-only provenance (buildx's default)
 * needs an image output, and kiln leaves the implicit default out when an image output uses
 * Docker media types (which cannot list attestation manifests).
 */
export function forOutputs(
  r: AttestRequest,
  o: { imageOutput: boolean; dockerMediaTypes: boolean; implicitProvenance: boolean },
): AttestRequest {
  const out: AttestRequest = { ...r };
  if (out.provenance?.inlineOnly && !o.imageOutput) delete out.provenance;
  if (o.implicitProvenance && o.dockerMediaTypes) delete out.provenance;
  return out;
}
