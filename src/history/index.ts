export {
  buildName,
  newRef,
  recordRequest,
  type BuildRecord,
  type RecordStatus,
  type StepCounts,
} from "./record.js";
export { HistoryStore, DEFAULT_KEEP, keepFromEnv, type PruneOptions } from "./store.js";
export { HistoryRecorder, recordBuild, type RecordBuildOptions } from "./recorder.js";
export {
  countSteps,
  criticalPath,
  failedStep,
  foldSteps,
  type Step,
  type StepMode,
} from "./steps.js";
export { traceOf, type Trace } from "./trace.js";
export { formatDuration, timelineHtml } from "./timeline.js";
