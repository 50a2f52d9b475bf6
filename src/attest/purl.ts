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

/**
 * An image reference as a purl, as BuildKit writes subjects and materials:
 * `pkg:docker/<familiar namespace>/<name>@<tag>?digest=…&platform=linux%2Famd64`; a name
 * without tag or digest gets `latest`.
 */
export function imagePurl(ref: string, platform?: Platform, type = "docker"): string {
  const r = parseReference(ref);
  const familiar = familiarName({ ...r, tag: undefined, digest: undefined });
  const parts = familiar.split("/");
  const name = parts.pop()!;
  const version = r.digest !== undefined ? r.tag : (r.tag ?? "latest");
  return formatPurl({
    type,
    namespace: parts.join("/"),
    name,
    version,
    qualifiers: {
      digest: r.digest,
      platform: platform && format(normalize(platform)),
    },
  });
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
    return formatPurl({
      type: "oci",
      name: layout.context,
      qualifiers: { digest: layout.digest, platform: format(normalize(platform)) },
    });
  }
}
