export {
  ContentStore,
  checkExpected,
  refNameAnnotation,
  type BlobInfo,
  type Expected,
} from "./store.js";
