/**
 * Platform specifiers: Parse / Normalize / Format / FormatAll with containerd's exact rules.
 * Parse and Normalize are deliberately different canonical forms (Parse keeps `arm64/v8`,
 * drops `arm`'s v7; Normalize does the opposite) — see the anchors notes §1a.
 */
import path from "node:path";
import { KilnError } from "../errors.js";
import { isKnownArch, isKnownOS, normalizeArch, normalizeOS } from "./database.js";
import { defaultSpec } from "./host.js";
import type { Platform } from "./types.js";

const COMPONENT_RE = /^[A-Za-z0-9_.-]+$/;
const OS_RE = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$/;

const SYNTAX_HINT =
  "write os[/arch[/variant]], e.g. linux/amd64, linux/arm64, linux/arm/v7 " +
  "(OS version and features go in parentheses: windows(10.0.17763+win32k)/amd64)";

function invalid(specifier: string, reason: string): KilnError {
  return new KilnError("E_PLATFORM", `invalid platform ${JSON.stringify(specifier)}: ${reason}`, {
    hint: SYNTAX_HINT,
  });
}

/** Builds a Platform, leaving out empty optional fields so results compare and serialize cleanly. */
function make(
  os: string,
  architecture: string,
  variant = "",
  osVersion = "",
  osFeatures: readonly string[] = [],
): Platform {
  const p: Platform = { os, architecture };
  if (variant !== "") p.variant = variant;
  if (osVersion !== "") p.osVersion = osVersion;
  if (osFeatures.length > 0) p.osFeatures = [...osFeatures];
  return p;
}

/** Go's `url.PathUnescape`: `%XX` escapes must be complete hex pairs; `+` stays literal. */
function unescapeOption(specifier: string, value: string): string {
  if (!value.includes("%")) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x25) {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw invalid(specifier, `invalid percent-escape ${JSON.stringify(value.slice(i, i + 3))}`);
      }
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(c); // the OS regex only admits ASCII here
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Characters that would be ambiguous inside `os(<version>+<feature>)`. */
function escapeOption(value: string): string {
  return value.replace(/[%+()/]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/**
 * Parses `<os>[(<osversion>[+<feature>]*)]`, `<arch>`, or `<os>/<arch>[/<variant>]`. A lone
 * OS takes the host's architecture; a lone architecture takes the host's OS (`host` defaults to
 * the real host and is injectable for tests). Throws KilnError E_PLATFORM.
 */
export function parse(specifier: string, host?: Platform): Platform {
  if (specifier.includes("*")) throw invalid(specifier, "wildcards are not supported");
  // At most 4 pieces so a long input cannot make an unbounded split.
  const parts = splitN(specifier, "/", 4);
  const osMatch = OS_RE.exec(parts[0]!);
  if (osMatch === null) {
    throw invalid(
      specifier,
      `${JSON.stringify(parts[0])} is not a valid OS component (letters, digits, "_" and "-", ` +
        `optionally followed by "(version+feature)")`,
    );
  }
  for (const part of parts.slice(1)) {
    if (!COMPONENT_RE.test(part)) {
      throw invalid(
        specifier,
        `${JSON.stringify(part)} is not a valid component (only letters, digits, ".", "_" and "-" are allowed)`,
      );
    }
  }
  const hostSpec = (): Platform => host ?? defaultSpec();
  const os = normalizeOS(osMatch[1]!, () => hostSpec().os);
  const osVersion = unescapeOption(specifier, osMatch[2] ?? "");
  const osFeatures = (osMatch[3] ?? "")
    .split("+")
    .slice(1)
    .map((f) => unescapeOption(specifier, f))
    .filter((f) => f !== "");

  switch (parts.length) {
    case 1: {
      if (isKnownOS(os)) {
        const h = hostSpec();
        // containerd only carries the host variant for 32-bit ARM, and leaves v7 implicit.
        const variant = h.architecture === "arm" && h.variant !== "v7" ? (h.variant ?? "") : "";
        return make(os, h.architecture, variant, osVersion, osFeatures);
      }
      const [arch, variant] = dropArmV7(normalizeArch(parts[0]!, ""));
      if (isKnownArch(arch)) return make(hostSpec().os, arch, variant, osVersion, osFeatures);
      throw invalid(specifier, "unknown operating system or architecture");
    }
    case 2: {
      const [arch, variant] = dropArmV7(normalizeArch(parts[1]!, ""));
      return make(os, arch, variant, osVersion, osFeatures);
    }
    case 3: {
      const [arch, normalizedVariant] = normalizeArch(parts[1]!, parts[2]!);
      // An explicit arm64 variant survives Parse (Normalize drops it later).
      const variant = arch === "arm64" && normalizedVariant === "" ? "v8" : normalizedVariant;
      return make(os, arch, variant, osVersion, osFeatures);
    }
    default:
      throw invalid(specifier, "too many components (at most os/arch/variant)");
  }
}

function dropArmV7([arch, variant]: [string, string]): [string, string] {
  return arch === "arm" && variant === "v7" ? [arch, ""] : [arch, variant];
}

/** Go's `strings.SplitN`: at most `n` pieces, the last one holding the rest. */
function splitN(s: string, sep: string, n: number): string[] {
  const pieces = s.split(sep);
  if (pieces.length <= n) return pieces;
  return [...pieces.slice(0, n - 1), pieces.slice(n - 1).join(sep)];
}

/**
 * The canonical form used for comparison and for TARGETPLATFORM: lower-cased, aliases
 * resolved, arm gets an explicit v7, amd64/v1 and arm64/v8 lose theirs, features sorted and
 * de-duplicated. An empty OS becomes the host's (`host` as in `parse`).
 */
export function normalize(p: Platform, host?: Platform): Platform {
  const os = normalizeOS(p.os, () => (host ?? defaultSpec()).os);
  const [arch, variant] = normalizeArch(p.architecture, p.variant ?? "");
  const features = [...new Set(p.osFeatures ?? [])].sort(compareStrings);
  return make(os, arch, variant, p.osVersion ?? "", features);
}

/** `normalize(parse(s))` — what BuildKit's Dockerfile frontend does with `--platform`. */
export function parseNormalized(specifier: string, host?: Platform): Platform {
  return normalize(parse(specifier, host), host);
}

/** The normalized host platform (`linux/arm64`, `linux/arm/v7`, `linux/amd64`). */
export function defaultPlatform(): Platform {
  return normalize(defaultSpec());
}

/** Byte-wise comparison, as Go sorts strings (localeCompare would not). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Go's `path.Join`: empty elements vanish and the result is cleaned. */
function joinPath(...elements: string[]): string {
  const joined = path.posix.join(...elements.filter((e) => e !== ""));
  return joined.length > 1 && joined.endsWith("/") ? joined.slice(0, -1) : joined;
}

/** `os/arch[/variant]` without OS version or features; `unknown` when the OS is empty. */
export function format(p: Platform): string {
  if (p.os === "") return "unknown";
  return joinPath(p.os, p.architecture, p.variant ?? "");
}

/**
 * Like `format`, but carries OS version and features: `windows(10.0.17763+win32k)/amd64`.
 * Features are sorted and de-duplicated; `%`, `+`, `(`, `)` and `/` are percent-encoded, so
 * the result always parses back to the same platform.
 */
export function formatAll(p: Platform): string {
  if (p.os === "") return "unknown";
  const version = escapeOption(p.osVersion ?? "");
  const features = [...new Set(p.osFeatures ?? [])]
    .filter((f) => f !== "")
    .sort(compareStrings)
    .map(escapeOption)
    .join("+");
  if (version === "" && features === "") return joinPath(p.os, p.architecture, p.variant ?? "");
  const options = version + (features === "" ? "" : "+" + features);
  return joinPath(`${p.os}(${options})`, p.architecture, p.variant ?? "");
}

/** Whether two platforms are the same once normalized (features compared as sets). */
export function equal(a: Platform, b: Platform): boolean {
  const na = normalize(a);
  const nb = normalize(b);
  const fa = na.osFeatures ?? [];
  const fb = nb.osFeatures ?? [];
  return (
    na.os === nb.os &&
    na.architecture === nb.architecture &&
    (na.variant ?? "") === (nb.variant ?? "") &&
    (na.osVersion ?? "") === (nb.osVersion ?? "") &&
    fa.length === fb.length &&
    fa.every((f, i) => f === fb[i])
  );
}
