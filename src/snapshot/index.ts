// Layers on disk: overlayfs snapshots (copy fallback), mount stacks, crash-safe commits.
export { Snapshotter, driverFromEnv } from "./snapshotter.js";
export type {
  ActiveLayer,
  ActiveMount,
  SnapshotDriver,
  SnapshotInfo,
  SnapshotterOptions,
} from "./snapshotter.js";
export { parseMountInfo, mountsUnder, readMountInfo } from "./mountinfo.js";
export type { MountInfo } from "./mountinfo.js";
export { overlayOptions, overlayFits, DIFF_SAFE_OPTIONS } from "./overlay.js";
export type { OverlayDirs } from "./overlay.js";
export {
  flatSnapshotId,
  isFlatSnapshot,
  pulledLayerId,
  snapshotKind,
  stepSnapshotId,
} from "./ids.js";
export type { SnapshotKind } from "./ids.js";
