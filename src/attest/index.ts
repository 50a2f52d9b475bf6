/** Supply-chain attestations (SLSA provenance, SPDX SBOM) stored as BuildKit stores them. */
export {
  forOutputs,
  wantsAttestations,
  type AttestRequest,
  type ProvenanceRequest,
  type SbomRequest,
  type SlsaVersion,
} from "./options.js";
export {
  SLSA_V02,
  SLSA_V1,
  provenancePredicate,
  type BuildFacts,
  type ImageMaterial,
  type PlatformFacts,
} from "./provenance.js";
export {
  attestBuild,
  makeAttestations,
  scanContextEnabled,
  type PlatformTarget,
  type ResolvedImageRecord,
} from "./make.js";
export { imagePurl, formatPurl } from "./purl.js";
export { scanPackages } from "./sbom/scan.js";
export { SPDX_PREDICATE, spdxDocument } from "./sbom/spdx.js";
export {
  ATTESTATION_ARTIFACT_TYPE,
  ATTESTATION_REFERENCE_TYPE,
  IN_TOTO_MEDIA_TYPE,
  IN_TOTO_STATEMENT_V1,
  PREDICATE_TYPE_ANNOTATION,
  REFERENCE_DIGEST_ANNOTATION,
  REFERENCE_TYPE_ANNOTATION,
  fileSubject,
  isAttestationManifest,
  imageSubjects,
  statementOf,
  storeAttestations,
  type Attestation,
  type Statement,
  type StoredAttestations,
  type Subject,
} from "./storage.js";
