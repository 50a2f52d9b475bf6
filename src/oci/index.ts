export * from "./mediatypes.js";
export type * from "./types.js";
export { encodeJSON, digestOf, isDigest, sha256Hex, describe, toBlob } from "./encode.js";
export { toPlatform, fromPlatform } from "./platform.js";
export { goImageConfig, type GoImageConfig } from "./goconfig.js";
export {
  emptyDescriptor,
  emptyIndex,
  appendManifests,
  setAnnotations,
  withPlatform,
  manifestFor,
  emptyConfig,
  appendHistory,
  type ManifestOptions,
} from "./build.js";
export {
  parseManifest,
  parseIndex,
  parseManifestOrIndex,
  parseConfig,
  type ParsedDocument,
} from "./parse.js";
