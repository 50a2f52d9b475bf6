export type {
  LogEvent,
  PlatformSummary,
  ProgressEvent,
  ProgressSink,
  StatusEvent,
  SummaryEvent,
  VertexEvent,
  WarningEvent,
} from "./events.js";
export { ProgressBus, RecordingSink, mergeVertex } from "./bus.js";
export {
  createRenderer,
  defaultProgressMode,
  parseProgressMode,
  progressModes,
  resolveProgressMode,
  type ProgressMode,
  type RendererOptions,
  type ResolvedProgressMode,
} from "./mode.js";
export { PlainRenderer } from "./plain.js";
export { QuietRenderer, RawJsonRenderer } from "./simple.js";
export { TtyRenderer, type TtyOptions } from "./tty.js";
export { formatBytes } from "./format.js";
