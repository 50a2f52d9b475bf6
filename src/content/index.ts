export {
  ContentStore,
  checkExpected,
  openVerified,
  readVerified,
  type BlobErrors,
  refNameAnnotation,
  type BlobInfo,
  type IndexRecords,
  type Expected,
} from "./store.js";
