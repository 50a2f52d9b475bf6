// The state dir's shared metadata (image index, cache records, leases, cache-mount holders) in
// one SQLite database with cross-process transactions; see store.ts and migrate.ts.
export { MetadataStore } from "./store.js";
export type {
  CacheMountHolder,
  CacheSharing,
  LayerBlobRow,
  LeaseKind,
  ResultRow,
} from "./store.js";
export { LAYOUT_VERSION } from "./migrate.js";
