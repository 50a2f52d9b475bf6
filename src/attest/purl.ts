/**
 * Package URLs (github.com/package-url/purl-spec): the names attestations give images
 * (statement subjects, provenance materials) and the packages an SBOM lists.
 */
import { format, normalize } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import { familiarName, parseReference } from "../reference/index.js";
import { parseLayoutImageName } from "../source/index.js";

/** Percent-encoding of a qualifier value: everything but unreserved characters. */
function enc(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** A path segment (namespace part, name, version): as `enc`, but `:+()` stay readable. */
function segment(s: string): string {
  return enc(s).replace(/%(3A|2B|28|29)/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

export interface Purl {
  type: string;
  namespace?: string;
  name: string;
  version?: string;
  /** written sorted by key, as the spec's canonical form asks */
  qualifiers?: Record<string, string | undefined>;
}

export function formatPurl(p: Purl): string {
  let s = `pkg:${p.type}/`;
  if (p.namespace) s += p.namespace.split("/").map(segment).join("/") + "/";
  s += segment(p.name);
  if (p.version) s += `@${segment(p.version)}`;
  const q = Object.entries(p.qualifiers ?? {})
    .filter((e): e is [string, string] => e[1] !== undefined && e[1] !== "")
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (q.length > 0) s += "?" + q.map(([k, v]) => `${k}=${enc(v)}`).join("&");
  return s;
}

/** Go's url.QueryEscape: all but unreserved characters, a space as `+`. */
function goQueryEscape(s: string): string {
  return enc(s).replace(/%20/g, "+");
}

/** Go's url.PathEscape: as a path segment, so `$&+:=@` stay as they are. */
function goPathEscape(s: string): string {
  return goQueryEscape(s)
    .replace(/\+/g, "%20")
    .replace(/%(24|26|2B|3A|3D|40)/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/**
 * An image reference as a purl, as BuildKit writes subjects and materials (its packageurl-go:
 * namespace and name query-escaped, version and qualifiers path-escaped, so a registry port is
 * `%3A` and a digest keeps its colon):
 * `pkg:docker/<familiar namespace>/<name>@<tag>?digest=sha256:…&platform=linux%2Famd64`; a
 * name without tag or digest gets `latest`.
 */
export function imagePurl(ref: string, platform?: Platform, type = "docker"): string {
  const r = parseReference(ref);
  const familiar = familiarName({ ...r, tag: undefined, digest: undefined });
  const parts = familiar.split("/");
  return goPurl(type, parts.slice(0, -1), parts.at(-1)!, {
    version: r.digest !== undefined ? r.tag : (r.tag ?? "latest"),
    digest: r.digest,
    platform: platform && format(normalize(platform)),
  });
}

/** A purl as BuildKit's packageurl-go writes it (qualifiers in the order given). */
function goPurl(
  type: string,
  namespace: readonly string[],
  name: string,
  o: { version?: string; digest?: string; platform?: string },
): string {
  let s = `pkg:${type}/${[...namespace, name].map(goQueryEscape).join("/")}`;
  if (o.version) s += `@${goPathEscape(o.version)}`;
  const qualifiers = [
    ["digest", o.digest],
    ["platform", o.platform],
  ].filter((q): q is [string, string] => q[1] !== undefined);
  if (qualifiers.length > 0)
    s += "?" + qualifiers.map(([k, v]) => `${k}=${goPathEscape(v)}`).join("&");
  return s;
}

/**
 * A base image material: a registry image as `imagePurl`; the image of an `oci-layout://`
 * context (named `oci-layout://NAME@DIGEST`) as BuildKit writes it, `pkg:oci/NAME?digest=…`.
 */
export function materialPurl(ref: string, platform: Platform): string {
  const layout = parseLayoutImageName(ref);
  if (!layout) return imagePurl(ref, platform);
  try {
    return imagePurl(`${layout.context}@${layout.digest}`, platform, "oci");
  } catch {
    // a context name that is no image name (BuildKit would refuse it) still gets a purl
    return goPurl("oci", [], layout.context, {
      digest: layout.digest,
      platform: format(normalize(platform)),
    });
  }
}
