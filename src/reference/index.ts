export {
  parseReference,
  formatReference,
  familiarName,
  repositoryName,
  withTag,
  withDigest,
  registryHost,
  type Reference,
} from "./reference.js";
