// Remote sources of build inputs (ADD <http(s) URL>).
export { HttpSource, safeFileName, urlFileName } from "./http.js";
export type { HttpSourceOptions } from "./http.js";
export { parseGitRef, checkoutGit, type GitRef } from "./git.js";
export {
  OCI_LAYOUT_CONTEXT,
  OciLayoutSource,
  layoutImageName,
  parseLayoutImageName,
  parseOciLayoutContext,
  selectLayoutEntry,
  type OciLayoutSpec,
} from "./ocilayout.js";
