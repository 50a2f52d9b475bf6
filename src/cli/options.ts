/**
 * Parsing of `kiln build` flag values, with buildx's syntax: CSV attribute lists for
 * --output/--secret/--cache-*, KEY=VALUE pairs, `--build-arg KEY` taking the value from the
 * environment. Pure functions; errors name the flag and the value.
 */
import { KilnError } from "../errors.js";
import type { OutputSpec } from "../engine/request.js";

function flagError(flag: string, value: string, why: string, hint?: string): KilnError {
  return new KilnError("E_FLAG", `invalid ${flag} value ${JSON.stringify(value)}: ${why}`, {
    hint,
  });
}

/** Splits a CSV attribute list like buildx: fields separated by commas, "quoted" fields keep commas. */
export function splitCSV(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      if (quoted && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out.map((f) => f.trim()).filter((f) => f !== "");
}

export function parseAttributes(flag: string, value: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const field of splitCSV(value)) {
    const eq = field.indexOf("=");
    if (eq < 0) attrs.set(field.toLowerCase(), "");
    else attrs.set(field.slice(0, eq).trim().toLowerCase(), field.slice(eq + 1));
  }
  if (attrs.size === 0) throw flagError(flag, value, "empty");
  return attrs;
}

function bool(flag: string, key: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === "" || v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw flagError(flag, `${key}=${v}`, "expected true or false");
}

/** KEY=VALUE list → record (later keys win). */
export function parseKeyValues(flag: string, values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw flagError(flag, v, "expected KEY=VALUE");
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/** `--build-arg K=V`, or `--build-arg K` to take K from the environment (skipped if unset). */
export function parseBuildArgs(
  values: readonly string[],
  env: NodeJS.ProcessEnv,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq === 0) throw flagError("--build-arg", v, "empty name");
    if (eq < 0) {
      const fromEnv = env[v];
      if (fromEnv !== undefined) out[v] = fromEnv;
    } else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

export function parseAddHosts(values: readonly string[]): { host: string; ip: string }[] {
  return values.map((v) => {
    const m = /^([^:=]+)[:=](.+)$/.exec(v);
    if (!m) throw flagError("--add-host", v, "expected HOST:IP", "e.g. --add-host db:10.0.0.5");
    return { host: m[1]!, ip: m[2]! };
  });
}

/**
 * `-o`/`--output` (buildx semantics): `type=…,key=…` or a bare path meaning `type=local,dest=path`
 * (`-` alone means a tar on stdout).
 */
export function parseOutput(value: string, tags: readonly string[]): OutputSpec {
  if (!value.includes("=")) {
    if (value === "-") return { type: "tar", dest: "-" };
    return { type: "local", dest: value };
  }
  const a = parseAttributes("--output", value);
  const type = a.get("type") ?? "local";
  const names = (a.get("name") ?? "").split(",").filter(Boolean);
  const annotations: Record<string, string> = {};
  for (const [k, v] of a)
    if (k.startsWith("annotation.")) annotations[k.slice("annotation.".length)] = v;
  switch (type) {
    case "image":
    case "registry": {
      const compression = a.get("compression") ?? "gzip";
      if (compression !== "gzip" && compression !== "zstd" && compression !== "uncompressed") {
        throw flagError(
          "--output",
          value,
          `unknown compression ${compression}`,
          "use gzip, zstd or uncompressed",
        );
      }
      const level = a.get("compression-level");
      return {
        type: "image",
        names: names.length ? names : [...tags],
        push: type === "registry" || bool("--output", "push", a.get("push"), false),
        pushByDigest: bool("--output", "push-by-digest", a.get("push-by-digest"), false),
        nameCanonical: bool("--output", "name-canonical", a.get("name-canonical"), false),
        ociMediaTypes: bool("--output", "oci-mediatypes", a.get("oci-mediatypes"), true),
        compression,
        compressionLevel: level === undefined ? undefined : Number(level),
        forceCompression: bool("--output", "force-compression", a.get("force-compression"), false),
        annotations,
        insecure: bool("--output", "registry.insecure", a.get("registry.insecure"), false),
      };
    }
    case "oci":
    case "docker": {
      const tar = bool("--output", "tar", a.get("tar"), true);
      const dest = a.get("dest");
      if (dest === undefined) {
        throw flagError(
          "--output",
          value,
          "dest is required",
          `e.g. --output type=${type},dest=out.tar`,
        );
      }
      return { type, dest, tar, names: names.length ? names : [...tags], annotations };
    }
    case "local":
    case "tar": {
      const dest = a.get("dest");
      if (dest === undefined) throw flagError("--output", value, "dest is required");
      const split = a.get("platform-split");
      return {
        type,
        dest,
        platformSplit:
          split === undefined ? undefined : bool("--output", "platform-split", split, true),
      };
    }
    default:
      throw flagError(
        "--output",
        value,
        `unknown output type ${type}`,
        "use image, registry, oci, docker, local or tar",
      );
  }
}

/** `--secret id=x,src=path` | `id=x,env=VAR` | `id=x` (env var or file named x). */
export function parseSecret(value: string): { id: string; src?: string; env?: string } {
  const a = parseAttributes("--secret", value);
  const id = a.get("id");
  if (!id)
    throw flagError("--secret", value, "id is required", "e.g. --secret id=token,src=./token.txt");
  const src = a.get("src") ?? a.get("source");
  const env = a.get("env") ?? (a.get("type") === "env" ? id : undefined);
  return { id, src, env };
}

/** `--ssh default` | `--ssh id=socket-or-key[,…]` */
export function parseSsh(value: string, env: NodeJS.ProcessEnv): { id: string; path: string } {
  const eq = value.indexOf("=");
  const id = eq < 0 ? value : value.slice(0, eq);
  const path = eq < 0 ? env.SSH_AUTH_SOCK : value.slice(eq + 1).split(",")[0];
  if (!path) {
    throw flagError(
      "--ssh",
      value,
      "no agent socket",
      "start ssh-agent (SSH_AUTH_SOCK) or give --ssh id=/path/to/socket",
    );
  }
  return { id, path };
}

export function parseBuildContexts(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw flagError("--build-context", v, "expected NAME=DIR");
    const target = v.slice(eq + 1);
    if (/^[a-z-]+:\/\//.test(target)) {
      throw flagError(
        "--build-context",
        v,
        "only local directories are supported as named contexts so far",
      );
    }
    out[v.slice(0, eq)] = target;
  }
  return out;
}
