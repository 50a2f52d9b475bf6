export type { Platform, Matcher, MatchComparer } from "./types.js";
export {
  parse,
  parseNormalized,
  normalize,
  format,
  formatAll,
  equal,
  defaultPlatform,
} from "./parse.js";
export {
  newMatcher,
  only,
  onlyStrict,
  onlyOS,
  ordered,
  any,
  all,
  platformVector,
} from "./match.js";
export { defaultSpec, toGoArch, toGoOS, cpuVariantFrom, type CpuFacts } from "./host.js";
export { parsePlatformList } from "./list.js";
