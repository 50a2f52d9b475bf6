/**
 * Docker image references (distribution/reference semantics): `[registry/]repository[:tag][@digest]`
 * with Docker Hub defaults (`busybox` → `docker.io/library/busybox:latest`).
 */
import { KilnError } from "../errors.js";

export interface Reference {
  /** Registry host[:port], `docker.io` for Docker Hub. */
  registry: string;
  /** Path within the registry, e.g. `library/busybox`. */
  repository: string;
  tag?: string;
  /** `algorithm:hex`, e.g. `sha256:…`. */
  digest?: string;
}

const DEFAULT_REGISTRY = "docker.io";
const LEGACY_DEFAULT_REGISTRY = "index.docker.io";
const OFFICIAL_PREFIX = "library/";
const DEFAULT_TAG = "latest";
const REPOSITORY_MAX = 255;
/** Far above any valid reference; bounds regex work on hostile input. */
const INPUT_MAX = 4096;

// The grammar of distribution/reference's regexp.go.
const alphanumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domainAndPort = `(?:${domainName}|${ipv6})(?::[0-9]+)?`;
const tagPat = "[\\w][\\w.-]{0,127}";
const digestPat = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
const namePat = `(?:${domainAndPort}/)?${remoteName}`;

const REFERENCE_RE = new RegExp(`^(${namePat})(?::(${tagPat}))?(?:@(${digestPat}))?$`);
const NAME_RE = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`);
const TAG_RE = new RegExp(`^${tagPat}$`);
const DIGEST_RE = new RegExp(`^${digestPat}$`);
const IMAGE_ID_RE = /^[a-f0-9]{64}$/;

/** Digest algorithms we can verify, with their hex length. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

const HINT =
  "image references look like [registry[:port]/]repository[:tag][@sha256:<64 hex>], " +
  "e.g. alpine:3.20, ghcr.io/org/app:1.2 or localhost:5000/app@sha256:…";

/** Long inputs are cut so the message stays readable. */
function shown(input: string): string {
  return JSON.stringify(input.length > 200 ? input.slice(0, 200) + "…" : input);
}

function invalid(input: string, reason: string): KilnError {
  return new KilnError("E_REFERENCE", `invalid image reference ${shown(input)}: ${reason}`, {
    hint: HINT,
  });
}

/** Why `digest` is unacceptable, or undefined when it is fine (go-digest's Validate). */
function digestProblem(digest: string): string | undefined {
  if (!DIGEST_RE.test(digest))
    return `digest ${JSON.stringify(digest)} is not of the form algorithm:hex`;
  const colon = digest.indexOf(":");
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (length === undefined) return `unsupported digest algorithm ${JSON.stringify(algorithm)}`;
  if (hex.length !== length)
    return `${algorithm} digest must have ${length} hex characters, not ${hex.length}`;
  if (!/^[a-f0-9]+$/.test(hex)) return `${algorithm} digest must be lower-case hex`;
  return undefined;
}

/**
 * Splits off the registry the way Docker does: the first path component is a registry when
 * it contains `.` or `:`, is `localhost`, or has upper-case letters; otherwise the whole name
 * lives on Docker Hub, where single-component names get the `library/` prefix.
 */
function splitRegistry(name: string): [string, string] {
  const slash = name.indexOf("/");
  if (slash < 0) return [DEFAULT_REGISTRY, OFFICIAL_PREFIX + name];
  const first = name.slice(0, slash);
  const rest = name.slice(slash + 1);
  let registry: string;
  let remainder: string;
  if (first === LEGACY_DEFAULT_REGISTRY) {
    [registry, remainder] = [DEFAULT_REGISTRY, rest];
  } else if (first === "localhost" || /[.:]/.test(first) || first.toLowerCase() !== first) {
    [registry, remainder] = [first, rest];
  } else {
    [registry, remainder] = [DEFAULT_REGISTRY, name];
  }
  if (registry === DEFAULT_REGISTRY && !remainder.includes("/"))
    remainder = OFFICIAL_PREFIX + remainder;
  return [registry, remainder];
}

/** A specific reason for a reference the grammar rejected. */
function diagnose(input: string, full: string): string {
  const at = full.indexOf("@");
  const beforeDigest = at < 0 ? full : full.slice(0, at);
  if (at >= 0) {
    const problem = digestProblem(full.slice(at + 1));
    if (problem !== undefined) return problem;
  }
  const lastSlash = beforeDigest.lastIndexOf("/");
  const colon = beforeDigest.indexOf(":", lastSlash + 1);
  if (colon >= 0) {
    const tag = beforeDigest.slice(colon + 1);
    if (!TAG_RE.test(tag)) {
      return `tag ${JSON.stringify(tag)} must be 1-128 letters, digits, "_", "." or "-", not starting with "." or "-"`;
    }
  }
  if (input.startsWith(":") || input.startsWith("@")) return "the repository name is missing";
  return 'repository names are lower-case letters and digits separated by "/", ".", "_", "__" or "-"';
}

/**
 * Parses an image reference, filling in Docker defaults: `busybox` →
 * `{ registry: "docker.io", repository: "library/busybox", tag: "latest" }`. A tag is only
 * defaulted when neither tag nor digest is given; `name:tag@digest` keeps both.
 * Throws KilnError E_REFERENCE saying what is wrong.
 */
export function parseReference(input: string): Reference {
  if (input === "") throw invalid(input, "it is empty");
  if (input.length > INPUT_MAX) throw invalid(input, "it is too long");
  if (IMAGE_ID_RE.test(input)) {
    throw invalid(input, "a 64-character hex string is an image ID, not a repository name");
  }
  const [registry, remainder] = splitRegistry(input);
  const colon = remainder.indexOf(":");
  const remote = colon < 0 ? remainder : remainder.slice(0, colon);
  if (remote.toLowerCase() !== remote) {
    throw invalid(input, `repository name ${JSON.stringify(remote)} must be lower-case`);
  }
  const full = `${registry}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (m === null) {
    const lower = full.toLowerCase();
    if (lower !== full && REFERENCE_RE.test(lower)) {
      throw invalid(input, "repository name must be lower-case");
    }
    throw invalid(input, diagnose(input, full));
  }
  const name = NAME_RE.exec(m[1]!);
  const ref: Reference = { registry: name?.[1] ?? "", repository: name?.[2] ?? m[1]! };
  if (ref.repository.length > REPOSITORY_MAX) {
    throw invalid(input, `repository name is longer than ${REPOSITORY_MAX} characters`);
  }
  const tag = m[2];
  const digest = m[3];
  if (digest !== undefined) {
    const problem = digestProblem(digest);
    if (problem !== undefined) throw invalid(input, problem);
    ref.digest = digest;
  }
  if (tag !== undefined) ref.tag = tag;
  else if (digest === undefined) ref.tag = DEFAULT_TAG;
  return ref;
}

function suffix(r: Reference): string {
  return (r.tag === undefined ? "" : `:${r.tag}`) + (r.digest === undefined ? "" : `@${r.digest}`);
}

/** `registry/repository`, e.g. `docker.io/library/busybox`. */
export function repositoryName(r: Reference): string {
  return `${r.registry}/${r.repository}`;
}

/** The fully qualified form, e.g. `docker.io/library/busybox:latest`. */
export function formatReference(r: Reference): string {
  return repositoryName(r) + suffix(r);
}

/** The short form people type: `busybox:latest`, `user/app:1`, `localhost:5000/a/b:t`. */
export function familiarName(r: Reference): string {
  let name = repositoryName(r);
  if (r.registry === DEFAULT_REGISTRY) {
    name = r.repository;
    const rest = name.startsWith(OFFICIAL_PREFIX) ? name.slice(OFFICIAL_PREFIX.length) : undefined;
    if (rest !== undefined && !rest.includes("/")) name = rest;
  }
  return name + suffix(r);
}

/** The same reference with `tag` (any digest is kept). */
export function withTag(r: Reference, tag: string): Reference {
  if (!TAG_RE.test(tag)) {
    throw new KilnError(
      "E_REFERENCE",
      `invalid tag ${JSON.stringify(tag)} for ${repositoryName(r)}`,
      {
        hint: 'tags are 1-128 letters, digits, "_", "." or "-", not starting with "." or "-"',
      },
    );
  }
  return { ...r, tag };
}

/** The same reference pinned to `digest` (any tag is kept). */
export function withDigest(r: Reference, digest: string): Reference {
  const problem = digestProblem(digest);
  if (problem !== undefined) {
    throw new KilnError("E_REFERENCE", `invalid digest for ${repositoryName(r)}: ${problem}`, {
      hint: "digests look like sha256:<64 lower-case hex characters>",
    });
  }
  return { ...r, digest };
}

/** The host to contact for the registry API (Docker Hub's API lives on registry-1.docker.io). */
export function registryHost(r: Reference): string {
  return r.registry === DEFAULT_REGISTRY ? "registry-1.docker.io" : r.registry;
}
