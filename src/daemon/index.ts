export {
  KilnDaemon,
  parseAddress,
  type DaemonOptions,
  type ListenAddress,
  type TlsFiles,
} from "./server.js";
export { probeOffer, type PlatformOffer } from "./info.js";
export {
  PROTOCOL_VERSION,
  HEARTBEAT_MS,
  TAR_CONTEXT,
  TAR_DOCKERFILE,
  TAR_NAMED,
  LineReader,
  RETURNED_OUTPUTS,
  type BuildHeader,
  type NodeInfo,
  type ServerLine,
} from "./protocol.js";
