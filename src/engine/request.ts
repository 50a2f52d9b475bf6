/** What a build is asked to do: the engine's input, the same in-process and (later) over the wire. */
import type { Platform } from "../platform/types.js";
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

export interface BuildRequest {
  contextDir: string;
  dockerfile: string;
  /** named contexts: name → directory (docker-image:// and oci-layout:// come later) */
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
  extraHosts: { host: string; ip: string }[];
  maxParallelism?: number;
  /** do not use kernel binfmt_misc handlers; emulate through the QEMU wrapper only */
  ignoreBinfmt: boolean;
  insecureRegistries: string[];
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
}
