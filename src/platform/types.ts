/** An OCI platform (image-spec `platform` object, camel-cased; `oci/` maps the JSON names). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

/** Decides whether a platform is acceptable (containerd `platforms.Matcher`). */
export interface Matcher {
  match(p: Platform): boolean;
}

/** A matcher that also ranks candidates: `less(a, b)` is true when `a` is preferred. */
export interface MatchComparer extends Matcher {
  less(a: Platform, b: Platform): boolean;
}
