export { createImage, type CreateRequest, type CreateResult } from "./create.js";
export {
  inspectImage,
  inspectJSON,
  formatInspect,
  type Inspected,
  type InspectJSON,
} from "./inspect.js";
export {
  attestationView,
  imageAttestations,
  type ImageAttestations,
  type ProvenanceStub,
  type SbomStub,
} from "./attestations.js";
export {
  mergeSources,
  parseAnnotation,
  platformFromConfig,
  platformKey,
  type AnnotationSpec,
  type AnnotationTarget,
  type MergeOptions,
  type MergeResult,
  type MergeSource,
} from "./merge.js";
