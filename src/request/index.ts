/**
 * What a build is asked to do: the engine's input, the same in-process and over the wire to
 * kilnd. It sits below the CLI, client, daemon, engine and exporter, which all speak it.
 */
import type { Entitlement } from "../entitlements/index.js";
import type { Platform } from "../platform/types.js";
import type { CacheExportSpec, CacheImportSpec } from "../remotecache/spec.js";
import type { CachePart } from "../remotecache/index.js";
import type { AttestRequest } from "../attest/options.js";

export type OutputSpec =
  | {
      type: "image";
      names: string[];
      push: boolean;
      pushByDigest: boolean;
      nameCanonical: boolean;
      ociMediaTypes: boolean;
      compression: "gzip" | "zstd" | "uncompressed";
      compressionLevel?: number;
      forceCompression: boolean;
      annotations: Record<string, string>;
      insecure: boolean;
    }
  | {
      type: "oci" | "docker";
      dest: string;
      tar: boolean;
      names: string[];
      annotations: Record<string, string>;
    }
  | { type: "local" | "tar"; dest: string; platformSplit?: boolean };

/** `--build-context name=docker-image://ref`: an image replaces `FROM name` / `--from=name`. */
export const IMAGE_CONTEXT = "docker-image://";

/** The image reference of a named context's value, or undefined for a directory. */
export function imageContextRef(value: string): string | undefined {
  return value.startsWith(IMAGE_CONTEXT) ? value.slice(IMAGE_CONTEXT.length) : undefined;
}

export interface BuildRequest {
  contextDir: string;
  dockerfile: string;
  /** named contexts: name → directory, or an image reference prefixed with IMAGE_CONTEXT */
  namedContexts: Record<string, string>;
  /** empty: the host platform */
  platforms: Platform[];
  buildArgs: Record<string, string>;
  target?: string;
  tags: string[];
  labels: Record<string, string>;
  outputs: OutputSpec[];
  noCache: boolean;
  noCacheFilter: string[];
  pull: boolean;
  secrets: Record<string, Buffer>;
  ssh: Record<string, string>;
  network: "default" | "none" | "host";
  /** entitlements asked for (`--allow`); a kilnd node grants only what its operator allows */
  allow?: Entitlement[];
  extraHosts: { host: string; ip: string }[];
  maxParallelism?: number;
  /** do not use kernel binfmt_misc handlers; emulate through the QEMU wrapper only */
  ignoreBinfmt: boolean;
  insecureRegistries: string[];
  /** `--cache-from`: caches to import before solving */
  cacheFrom?: CacheImportSpec[];
  /** `--cache-to`: where the build's cache goes */
  cacheTo?: CacheExportSpec[];
  /** SLSA provenance / SBOM to attach (none when absent; the CLI adds buildx's defaults) */
  attestations?: AttestRequest;
}

export interface PlatformOutcome {
  platform: Platform;
  manifestDigest: string;
  configDigest: string;
  durationMs: number;
  emulatedMs: number;
  cached: number;
  total: number;
}

export interface BuildResult {
  platforms: PlatformOutcome[];
  /** digest of the index (multi-platform) or the manifest (one platform) */
  digest: string;
  descriptor: { mediaType: string; digest: string; size: number };
  configDigest?: string;
  imageNames: string[];
  durationMs: number;
  /** caches pushed by digest for the client to merge (a node of a multi-node builder) */
  cacheParts?: CachePart[];
}
