/** archive: tar codec, layer diff/apply with OCI whiteouts, compression with hashing. */
export type { TarEntry, TarEntryType } from "./tar-format.js";
export { readTar, type TarReadEntry } from "./tar-reader.js";
export { encodeTar, packTar, type TarInput } from "./tar-writer.js";
export {
  diffDigest,
  diffOf,
  diffSignature,
  diffTrees,
  diffUpperDir,
  dirToTar,
  type LayerDiff,
  type WalkOptions,
} from "./walk.js";
export {
  applyLayer,
  extractTar,
  type ApplyOptions,
  type ExtractErrors,
  type ExtractOptions,
} from "./extract.js";
export { makeNodes, splitDev, type SpecialNode } from "./nodes.js";
export { OFF_THREAD_BYTES, OFF_THREAD_WORKERS, unpackLayerBlob } from "./apply-thread.js";
export {
  LAYER_MEDIA_TYPES,
  applyLayerBlob,
  compressLayer,
  compressLayerTo,
  compressionOf,
  decompressStream,
  type BlobWriter,
  type CompressedLayer,
  type Compression,
} from "./compress.js";
