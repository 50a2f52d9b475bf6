/**
 * `--cache-to` / `--cache-from` values (buildx's attribute syntax): where a build's cache is
 * exported to and imported from. Pure parsing; errors name the flag and the attribute.
 */
import { KilnError } from "../errors.js";
import type { Compression } from "../oci/index.js";

export type CacheMode = "min" | "max";

export type CacheExportSpec =
  | {
      type: "registry";
      ref: string;
      mode: CacheMode;
      compression: Compression;
      ociMediaTypes: boolean;
      imageManifest: boolean;
      ignoreError: boolean;
      insecure: boolean;
      /**
       * push the cache by digest, untagged (a multi-node builder's node exports its part so;
       * the client merges the parts under the tag). Not a flag.
       */
      part?: boolean;
    }
  | {
      type: "local";
      dest: string;
      tag: string;
      mode: CacheMode;
      compression: Compression;
      ociMediaTypes: boolean;
      imageManifest: boolean;
      ignoreError: boolean;
    }
  | { type: "inline" };

export type CacheImportSpec =
  | { type: "registry"; ref: string; insecure: boolean }
  | { type: "local"; src: string; tag: string; digest?: string };

function flagError(flag: string, value: string, why: string, hint?: string): KilnError {
  return new KilnError("E_FLAG", `invalid ${flag} value ${JSON.stringify(value)}: ${why}`, {
    hint,
  });
}

function bool(flag: string, value: string, key: string, v: string): boolean {
  if (v === "" || v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw flagError(flag, value, `${key}=${v}: expected true or false`);
}

const KNOWN_TYPES = "registry, local or inline";

function take(
  flag: string,
  value: string,
  a: ReadonlyMap<string, string>,
  allowed: readonly string[],
): void {
  for (const k of a.keys()) {
    // attributes of other cache backends (gha, s3, …) and BuildKit tuning kiln has no use for
    if (!allowed.includes(k)) {
      throw flagError(flag, value, `unknown attribute ${k}`, `known here: ${allowed.join(", ")}`);
    }
  }
}

function required(
  flag: string,
  value: string,
  a: ReadonlyMap<string, string>,
  key: string,
): string {
  const v = a.get(key);
  if (v === undefined || v === "") throw flagError(flag, value, `${key}= is required`);
  return v;
}

function compressionOf(flag: string, value: string, v: string | undefined): Compression {
  if (v === undefined) return "gzip";
  if (v === "gzip" || v === "zstd" || v === "uncompressed") return v;
  throw flagError(flag, value, `compression=${v}`, "use gzip, zstd or uncompressed");
}

/** One `--cache-to` value, given its attributes (the CLI splits the CSV). */
export function parseCacheTo(value: string, a: ReadonlyMap<string, string>): CacheExportSpec {
  const flag = "--cache-to";
  const type = a.get("type") ?? "registry";
  const mode = a.get("mode") ?? "min";
  const isMode = (m: string): m is CacheMode => m === "min" || m === "max";
  if (!isMode(mode)) {
    throw flagError(
      flag,
      value,
      `mode=${mode}`,
      "use mode=min (the image's steps) or mode=max (every step)",
    );
  }
  const common = {
    mode: mode,
    compression: compressionOf(flag, value, a.get("compression")),
    ociMediaTypes: bool(flag, value, "oci-mediatypes", a.get("oci-mediatypes") ?? "true"),
    imageManifest: bool(flag, value, "image-manifest", a.get("image-manifest") ?? "false"),
    ignoreError: bool(flag, value, "ignore-error", a.get("ignore-error") ?? "false"),
  };
  if (common.imageManifest && !common.ociMediaTypes) {
    throw flagError(
      flag,
      value,
      "image-manifest=true needs OCI media types",
      "drop oci-mediatypes=false",
    );
  }
  const shared = [
    "type",
    "mode",
    "compression",
    "oci-mediatypes",
    "image-manifest",
    "ignore-error",
  ];
  switch (type) {
    case "registry":
      take(flag, value, a, [...shared, "ref", "registry.insecure"]);
      return {
        type,
        ref: required(flag, value, a, "ref"),
        insecure: bool(flag, value, "registry.insecure", a.get("registry.insecure") ?? "false"),
        ...common,
      };
    case "local":
      take(flag, value, a, [...shared, "dest", "tag"]);
      return {
        type,
        dest: required(flag, value, a, "dest"),
        tag: a.get("tag") ?? "latest",
        ...common,
      };
    case "inline":
      take(flag, value, a, ["type", "mode"]);
      return { type };
    default:
      throw flagError(flag, value, `type=${type} is not supported`, `use ${KNOWN_TYPES}`);
  }
}

/** One `--cache-from` value, given its attributes; a bare `R` (no `=`) is `type=registry,ref=R`. */
export function parseCacheFrom(value: string, a: ReadonlyMap<string, string>): CacheImportSpec {
  const flag = "--cache-from";
  if (!value.includes("=")) return { type: "registry", ref: value.trim(), insecure: false };
  const type = a.get("type") ?? "registry";
  switch (type) {
    case "registry":
      take(flag, value, a, ["type", "ref", "registry.insecure"]);
      return {
        type,
        ref: required(flag, value, a, "ref"),
        insecure: bool(flag, value, "registry.insecure", a.get("registry.insecure") ?? "false"),
      };
    case "local": {
      take(flag, value, a, ["type", "src", "tag", "digest"]);
      const digest = a.get("digest");
      if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) {
        throw flagError(flag, value, `digest=${digest}`, "use digest=sha256:<64 hex digits>");
      }
      return { type, src: required(flag, value, a, "src"), tag: a.get("tag") ?? "latest", digest };
    }
    default:
      throw flagError(flag, value, `type=${type} is not supported`, "use registry or local");
  }
}
