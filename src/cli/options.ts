/**
 * Parsing of `kiln build` flag values, with buildx's syntax: CSV attribute lists for
 * --output/--secret/--cache-*, KEY=VALUE pairs, `--build-arg KEY` taking the value from the
 * environment. Pure functions; errors name the flag and the value.
 */
import { KilnError, messageOf } from "../errors.js";
import { IMAGE_CONTEXT, type OutputSpec } from "../request/index.js";
import { parseOciLayoutContext } from "../source/index.js";
import { parseAnnotationKey } from "../exporter/annotations.js";
import type { Compression } from "../oci/index.js";

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

const IMAGE_KEYS = [
  "name",
  "push",
  "push-by-digest",
  "name-canonical",
  "oci-mediatypes",
  "compression",
  "compression-level",
  "force-compression",
  "registry.insecure",
];
const KNOWN_KEYS: Record<OutputSpec["type"] | "registry", readonly string[]> = {
  image: IMAGE_KEYS,
  registry: IMAGE_KEYS,
  oci: ["dest", "tar", "name"],
  docker: ["dest", "tar", "name"],
  local: ["dest", "platform-split"],
  tar: ["dest", "platform-split"],
};

/**
 * `annotation.K`, `annotation-index.K`, `annotation-manifest[linux/arm64].K`, … (BuildKit's
 * exporter attributes) → the `TYPE:K` keys `--annotation` uses.
 */
function annotationAttr(flag: string, value: string, attr: string): string | undefined {
  const m = /^annotation(?:-([a-z-]+(?:\[[^\]]+\])?))?\.(.+)$/.exec(attr);
  if (!m) return undefined;
  const key = m[1] === undefined ? m[2]! : `${m[1]}:${m[2]!}`;
  try {
    parseAnnotationKey(key, "");
  } catch (e) {
    throw flagError(flag, value, messageOf(e), (e as KilnError).hint);
  }
  return key;
}

const COMPRESSION_LEVELS: Record<Compression, [number, number]> = {
  gzip: [0, 9],
  zstd: [0, 22],
  uncompressed: [0, 0],
};

/**
 * `-o`/`--output` (buildx semantics): `type=…,key=…` or a bare path meaning `type=local,dest=path`
 * (`-` alone means a tar on stdout). Unknown attributes are errors, so a typo is never ignored.
 */
export function parseOutput(value: string, tags: readonly string[]): OutputSpec {
  if (!value.includes("=")) {
    if (value === "-") return { type: "tar", dest: "-" };
    return { type: "local", dest: value };
  }
  const a = parseAttributes("--output", value);
  const type = a.get("type") ?? "local";
  const known = KNOWN_KEYS[type as keyof typeof KNOWN_KEYS] as readonly string[] | undefined;
  if (known === undefined) {
    throw flagError(
      "--output",
      value,
      `unknown output type ${type}`,
      "use image, registry, oci, docker, local or tar",
    );
  }
  const names = (a.get("name") ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  const annotations: Record<string, string> = {};
  for (const [k, v] of a) {
    if (k === "type") continue;
    const note =
      type === "local" || type === "tar" ? undefined : annotationAttr("--output", value, k);
    if (note !== undefined) annotations[note] = v;
    else if (!known.includes(k)) {
      throw flagError(
        "--output",
        value,
        `type=${type} has no attribute ${JSON.stringify(k)}`,
        `known: ${known.join(", ")}${type === "local" || type === "tar" ? "" : ", annotation.KEY, annotation-index.KEY, …"}`,
      );
    }
  }
  switch (type) {
    case "image":
    case "registry": {
      const compression = (a.get("compression") ?? "gzip") as Compression;
      const range = COMPRESSION_LEVELS[compression] as [number, number] | undefined;
      if (range === undefined) {
        throw flagError(
          "--output",
          value,
          `unknown compression ${compression}`,
          "use gzip, zstd or uncompressed",
        );
      }
      const levelText = a.get("compression-level");
      const level = levelText === undefined ? undefined : Number(levelText);
      if (
        level !== undefined &&
        (levelText === "" || !Number.isInteger(level) || level < range[0] || level > range[1])
      ) {
        throw flagError(
          "--output",
          value,
          `compression-level must be a whole number from ${range[0]} to ${range[1]} for ${compression}`,
        );
      }
      const ociMediaTypes = bool("--output", "oci-mediatypes", a.get("oci-mediatypes"), true);
      if (!ociMediaTypes && compression === "zstd") {
        throw flagError(
          "--output",
          value,
          "zstd layers need OCI media types",
          "drop oci-mediatypes=false, or use compression=gzip for Docker media types",
        );
      }
      return {
        type: "image",
        names: names.length ? names : [...tags],
        push: type === "registry" || bool("--output", "push", a.get("push"), false),
        pushByDigest: bool("--output", "push-by-digest", a.get("push-by-digest"), false),
        nameCanonical: bool("--output", "name-canonical", a.get("name-canonical"), false),
        ociMediaTypes,
        compression,
        compressionLevel: level,
        forceCompression: bool("--output", "force-compression", a.get("force-compression"), false),
        annotations,
        insecure: bool("--output", "registry.insecure", a.get("registry.insecure"), false),
      };
    }
    case "oci":
    case "docker": {
      const tar = bool("--output", "tar", a.get("tar"), true);
      if (!tar && type === "docker") {
        throw flagError(
          "--output",
          value,
          "type=docker always writes a tarball",
          "use type=oci,tar=false,dest=DIR for an OCI layout directory",
        );
      }
      const dest = a.get("dest");
      if (!dest) {
        throw flagError(
          "--output",
          value,
          "dest is required",
          `e.g. --output type=${type},dest=${tar ? "image.tar (or dest=- for stdout)" : "DIR"}`,
        );
      }
      if (!tar && dest === "-") {
        throw flagError("--output", value, "an OCI layout directory cannot go to stdout");
      }
      return { type, dest, tar, names: names.length ? names : [...tags], annotations };
    }
    default: {
      const dest = a.get("dest");
      if (!dest) {
        throw flagError(
          "--output",
          value,
          "dest is required",
          type === "tar"
            ? "e.g. --output type=tar,dest=rootfs.tar (or dest=-)"
            : "e.g. --output type=local,dest=out",
        );
      }
      if (type === "local" && dest === "-") {
        throw flagError(
          "--output",
          value,
          "a directory cannot go to stdout",
          "use type=tar,dest=-",
        );
      }
      const split = a.get("platform-split");
      return {
        type: type as "local" | "tar",
        dest,
        platformSplit:
          split === undefined ? undefined : bool("--output", "platform-split", split, true),
      };
    }
  }
}

/** `--annotation [TYPES:]KEY=VALUE` (repeatable) → the record outputs carry. */
export function parseAnnotations(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw flagError("--annotation", v, "expected [TYPE:]KEY=VALUE");
    const key = v.slice(0, eq);
    try {
      parseAnnotationKey(key, v.slice(eq + 1));
    } catch (e) {
      throw flagError("--annotation", v, messageOf(e), (e as KilnError).hint);
    }
    out[key] = v.slice(eq + 1);
  }
  return out;
}

export interface OutputFlags {
  output: readonly string[];
  tag: readonly string[];
  push?: boolean;
  load?: boolean;
  annotation: readonly string[];
  /** how many platforms are built (1 when only the host's) */
  platformCount: number;
}

export interface OutputPlan {
  outputs: OutputSpec[];
  /** no output was asked for: the result goes to kiln's store only */
  implicit: boolean;
}

const describeOutput = (o: OutputSpec): string =>
  o.type === "image" ? (o.push ? "type=registry" : "type=image") : `type=${o.type},dest=${o.dest}`;

/**
 * The outputs of a build from -o/--push/--load/-t/--annotation, checked against each other
 * before anything is built: every conflict is an E_FLAG naming the flags involved.
 */
export function planOutputs(f: OutputFlags): OutputPlan {
  const outputs = f.output.map((o) => parseOutput(o, f.tag));
  const images = (): Extract<OutputSpec, { type: "image" }>[] =>
    outputs.filter((o): o is Extract<OutputSpec, { type: "image" }> => o.type === "image");
  if (f.push) {
    if (images().length) for (const o of images()) o.push = true;
    else outputs.push(parseOutput("type=registry", f.tag));
  }
  if (f.load && !images().some((o) => !o.push)) outputs.push(parseOutput("type=image", f.tag));
  const implicit = outputs.length === 0;
  if (implicit) outputs.push(parseOutput("type=image", f.tag));

  const annotations = parseAnnotations(f.annotation);
  for (const o of outputs) if ("annotations" in o) Object.assign(o.annotations, annotations);

  for (const o of images()) {
    if (o.push && o.names.length === 0) {
      throw new KilnError("E_FLAG", "pushing needs an image name", {
        hint: "add -t registry.example.com/app:tag, or name=… in the --output",
      });
    }
  }
  const [first, ...rest] = images();
  for (const o of rest) {
    for (const k of [
      "compression",
      "compressionLevel",
      "forceCompression",
      "ociMediaTypes",
    ] as const) {
      if (o[k] !== first![k]) {
        throw new KilnError(
          "E_FLAG",
          `image outputs disagree on ${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} (${String(first![k])} vs ${String(o[k])})`,
          {
            hint: "kiln assembles one image per build: give every image/registry output the same layer settings",
          },
        );
      }
    }
  }
  const pushed = new Set<string>();
  for (const o of images()) {
    if (!o.push) continue;
    for (const n of o.names) {
      if (pushed.has(n)) {
        throw new KilnError("E_FLAG", `${n} is pushed by two outputs`, {
          hint: "drop the duplicate -o/--push, or give the outputs different name=…",
        });
      }
      pushed.add(n);
    }
  }
  const toStdout = outputs.filter((o) => o.type !== "image" && o.dest === "-");
  if (toStdout.length > 1) {
    throw new KilnError(
      "E_FLAG",
      `${toStdout.map(describeOutput).join(" and ")} both write to stdout`,
      {
        hint: "give all but one of them a dest file",
      },
    );
  }
  const dests = new Set<string>();
  for (const o of outputs) {
    if (o.type === "image" || o.dest === "-") continue;
    if (dests.has(o.dest)) {
      throw new KilnError("E_FLAG", `two outputs write to ${o.dest}`, {
        hint: "give each --output its own dest",
      });
    }
    dests.add(o.dest);
  }
  if (f.platformCount > 1) {
    const docker = outputs.find((o) => o.type === "docker");
    if (docker) {
      throw new KilnError(
        "E_FLAG",
        `${describeOutput(docker)} cannot hold ${f.platformCount} platforms: a \`docker load\` tarball has one`,
        {
          hint: "build one platform (--platform linux/amd64) for type=docker, or use --output type=oci,dest=image.tar for a multi-platform tarball",
        },
      );
    }
    const single = outputs.find(
      (o) => (o.type === "local" || o.type === "tar") && o.platformSplit === false,
    );
    if (single) {
      throw new KilnError(
        "E_FLAG",
        `${describeOutput(single)},platform-split=false cannot hold ${f.platformCount} platforms`,
        { hint: "drop platform-split=false to get one os_arch/ directory per platform" },
      );
    }
  }
  return { outputs, implicit };
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
    // checked here so a malformed value fails before the build starts
    if (parseOciLayoutContext(target) !== undefined) {
      out[v.slice(0, eq)] = target;
      continue;
    }
    if (/^[a-z-]+:\/\//.test(target) && !target.startsWith(IMAGE_CONTEXT)) {
      throw flagError(
        "--build-context",
        v,
        "a named context is a local directory, docker-image://REF, oci-layout://DIR[:TAG][@DIGEST], a git URL or an http(s) URL of a tar",
      );
    }
    out[v.slice(0, eq)] = target;
  }
  return out;
}
