export {
  ContentStore,
  checkExpected,
  refNameAnnotation,
  type BlobInfo,
  type IndexRecords,
  type Expected,
} from "./store.js";
