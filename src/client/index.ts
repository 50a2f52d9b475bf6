export {
  buildersPath,
  loadBuilders,
  saveBuilders,
  findBuilder,
  selectBuilder,
  type Builder,
  type BuilderNode,
  type BuildersFile,
  type NodeTls,
} from "./config.js";
export { NodeClient, NODE_FAULTS, type ProgressLine } from "./node.js";
export { packUpload, type UploadSpec } from "./context.js";
export { routePlatforms, type NodeOffer, type Route, type RouteKind } from "./route.js";
export { remoteBuild, type RemoteBuildOptions } from "./remote.js";
