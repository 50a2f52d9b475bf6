export {
  ContentStore,
  DocumentBatch,
  checkExpected,
  openVerified,
  readVerified,
  type BlobErrors,
  refNameAnnotation,
  type BlobInfo,
  type IndexRecords,
  type Expected,
} from "./store.js";
