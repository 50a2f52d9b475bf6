/**
 * Image annotations as buildx takes them: `--annotation [TYPES:]KEY=VALUE` where TYPES is a
 * comma list of `manifest` (the default), `manifest-descriptor`, `index`, `index-descriptor`,
 * each optionally scoped to one platform as `manifest[linux/arm64]`. Outputs carry them as a
 * record whose keys keep that `TYPES:KEY` form, so one record describes every target.
 */
import { KilnError } from "../errors.js";
import { formatAll, normalize, parse } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

export type AnnotationTarget = "manifest" | "manifest-descriptor" | "index" | "index-descriptor";

const TARGETS: readonly AnnotationTarget[] = [
  "manifest",
  "manifest-descriptor",
  "index",
  "index-descriptor",
];

export interface AnnotationRule {
  target: AnnotationTarget;
  /** only for manifests of this platform (normalized `os/arch[/variant]`) */
  platform?: string;
  key: string;
  value: string;
}

function annotationError(raw: string, why: string): KilnError {
  return new KilnError("E_FLAG", `invalid annotation ${JSON.stringify(raw)}: ${why}`, {
    hint: "use [TYPE:]KEY=VALUE with TYPE one or more of manifest, manifest-descriptor, index, index-descriptor (comma-separated, optionally with [os/arch]), e.g. index,manifest:org.opencontainers.image.title=app",
  });
}

/** `TYPES:KEY` (or plain `KEY`) → one rule per type. */
export function parseAnnotationKey(rawKey: string, value: string): AnnotationRule[] {
  const colon = rawKey.indexOf(":");
  const key = colon < 0 ? rawKey : rawKey.slice(colon + 1);
  if (key === "") throw annotationError(`${rawKey}=${value}`, "empty key");
  if (colon < 0) return [{ target: "manifest", key, value }];
  const rules: AnnotationRule[] = [];
  for (const part of splitTypes(rawKey.slice(0, colon))) {
    const m = /^([a-z-]+)(?:\[([^\]]+)\])?$/.exec(part);
    const target = m?.[1] as AnnotationTarget | undefined;
    if (!m || target === undefined || !TARGETS.includes(target)) {
      throw annotationError(
        `${rawKey}=${value}`,
        `unknown annotation type ${JSON.stringify(part)}`,
      );
    }
    let platform: string | undefined;
    if (m[2] !== undefined) {
      if (!target.startsWith("manifest")) {
        throw annotationError(`${rawKey}=${value}`, `${target} annotations cannot name a platform`);
      }
      platform = platformKey(parse(m[2]));
    }
    rules.push({ target, platform, key, value });
  }
  return rules;
}

// `manifest[linux/amd64],index` — commas inside brackets do not separate types
function splitTypes(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const c of s) {
    if (c === "[") depth++;
    if (c === "]") depth--;
    if (c === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out.map((p) => p.trim());
}

function platformKey(p: Platform): string {
  return formatAll(normalize(p));
}

/** The annotations of each object an export writes, from a `TYPES:KEY` → value record. */
export interface ImageAnnotations {
  index: Record<string, string>;
  indexDescriptor: Record<string, string>;
  manifest(platform: Platform): Record<string, string>;
  manifestDescriptor(platform: Platform): Record<string, string>;
}

export function resolveAnnotations(record: Readonly<Record<string, string>>): ImageAnnotations {
  const rules = Object.entries(record).flatMap(([k, v]) => parseAnnotationKey(k, v));
  const pick = (target: AnnotationTarget, platform?: Platform): Record<string, string> => {
    const want = platform === undefined ? undefined : platformKey(platform);
    const out: Record<string, string> = {};
    // unscoped rules first, so a platform-scoped value wins for its platform
    for (const scoped of [false, true]) {
      for (const r of rules) {
        if (r.target !== target || (r.platform !== undefined) !== scoped) continue;
        if (scoped && r.platform !== want) continue;
        out[r.key] = r.value;
      }
    }
    return out;
  };
  return {
    index: pick("index"),
    indexDescriptor: pick("index-descriptor"),
    manifest: (p) => pick("manifest", p),
    manifestDescriptor: (p) => pick("manifest-descriptor", p),
  };
}
