// Remote sources of build inputs (ADD <http(s) URL>, ADD <git URL>, git build contexts).
export { HttpSource, safeFileName, urlFileName } from "./http.js";
export type { HttpSourceOptions } from "./http.js";
export {
  parseGitRef,
  checkoutGit,
  resolveGitRef,
  matchRemoteRef,
  redactUrl,
  gitAuthHeader,
  type GitAccess,
  type GitRef,
  type ResolvedGitRef,
} from "./git.js";
export { GitSource } from "./git-source.js";
export {
  OCI_LAYOUT_CONTEXT,
  OciLayoutSource,
  layoutImageName,
  parseLayoutImageName,
  parseOciLayoutContext,
  selectLayoutEntry,
  type OciLayoutSpec,
} from "./ocilayout.js";
