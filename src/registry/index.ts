export {
  RegistryClient,
  formatRef,
  type RepositoryRef,
  type RegistryClientOptions,
  type RetryPolicy,
  type TransferProgress,
  type FetchedManifest,
  type PushResult,
} from "./client.js";
export { pullImage, pushImage, mapLimit, type PullResult } from "./transfer.js";
export { selectPlatform, matchingManifests } from "./select.js";
export { parseChallenges, type Challenge } from "./challenge.js";
export { repositoryScope } from "./auth.js";
export {
  dockerCredentials,
  parseDockerConfig,
  credentialsFromEntry,
  credentialKey,
  runCredentialHelper,
  type Credentials,
  type CredentialsProvider,
  type DockerConfig,
  type DockerCredentialsOptions,
} from "./credentials.js";
