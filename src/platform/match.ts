/**
 * Platform matchers (containerd compare.go): which platforms a target accepts, and in what
 * order of preference. Every comparison normalizes the candidate first, so `aarch64/v8`,
 * `arm64/v8` and `arm64` are the same platform.
 */
import { normalize } from "./parse.js";
import type { MatchComparer, Matcher, Platform } from "./types.js";
import { windowsVersionMatcher } from "./windows.js";

/** True when every feature of `candidate` is in `offered` (both normalized). */
function featuresSubset(candidate: readonly string[], offered: readonly string[]): boolean {
  const set = new Set(offered);
  return candidate.every((f) => set.has(f));
}

/**
 * Matches platforms equal to `p` after normalization whose OS features are a subset of p's.
 * For Windows the OS version must be runnable on p's (see windows.ts) and the `win32k`
 * feature is ignored on candidates, as older containerd releases did not consider it.
 */
export function newMatcher(p: Platform): Matcher {
  const want = normalize(p);
  const wantFeatures = want.osFeatures ?? [];
  const isWindows = p.os === "windows";
  const versionOk = isWindows ? windowsVersionMatcher(p.osVersion ?? "") : () => true;
  return {
    match(candidate: Platform): boolean {
      let c = candidate;
      if (isWindows && c.osFeatures !== undefined) {
        const i = c.osFeatures.indexOf("win32k");
        if (i >= 0) c = { ...c, osFeatures: c.osFeatures.filter((_, j) => j !== i) };
      }
      const got = normalize(c);
      return (
        want.os === got.os &&
        want.architecture === got.architecture &&
        (want.variant ?? "") === (got.variant ?? "") &&
        versionOk(c.osVersion ?? "") &&
        featuresSubset(got.osFeatures ?? [], wantFeatures)
      );
    },
  };
}

function featureCount(p: Platform): number {
  return p.osFeatures?.length ?? 0;
}

function withoutFeatures(p: Platform): Platform {
  const rest = { ...p };
  delete rest.osFeatures;
  return rest;
}

/**
 * Matches any of `platforms`; `less` prefers a candidate matched by an earlier entry, then the
 * one with more OS features. When neither candidate matches, it retries without features.
 */
export function ordered(...platforms: Platform[]): MatchComparer {
  const matchers = platforms.map(newMatcher);
  const less = (a: Platform, b: Platform): boolean => {
    for (const m of matchers) {
      const am = m.match(a);
      const bm = m.match(b);
      if (am && !bm) return true;
      if (am && bm && featureCount(a) !== featureCount(b)) return featureCount(a) > featureCount(b);
      if (am || bm) return false;
    }
    if (featureCount(a) > 0 || featureCount(b) > 0)
      return less(withoutFeatures(a), withoutFeatures(b));
    return false;
  };
  return { match: (p) => matchers.some((m) => m.match(p)), less };
}

/** Matches any of `platforms` with no preference among them (beyond more OS features). */
export function any(...platforms: Platform[]): MatchComparer {
  const matchers = platforms.map(newMatcher);
  const less = (a: Platform, b: Platform): boolean => {
    let am = false;
    let bm = false;
    for (const m of matchers) {
      am ||= m.match(a);
      bm ||= m.match(b);
      if (am && bm) {
        if (featureCount(a) !== featureCount(b)) return featureCount(a) > featureCount(b);
        break;
      }
    }
    if (!am && !bm && (featureCount(a) > 0 || featureCount(b) > 0)) {
      return less(withoutFeatures(a), withoutFeatures(b));
    }
    return am && !bm;
  };
  return { match: (p) => matchers.some((m) => m.match(p)), less };
}

/** Matches every platform, with no preference. */
export const all: MatchComparer = { match: () => true, less: () => false };

/** arm64 variant → [major, highest minor] pairs it can run, newest first. */
const ARM64_VERSIONS: Record<string, [number, number][]> = {
  v8: [[8, 0]],
  "v8.0": [[8, 0]],
  ...Object.fromEntries(
    [1, 2, 3, 4, 5, 6, 7, 8, 9].map((minor) => [`v8.${minor}`, [[8, minor]] as [number, number][]]),
  ),
  v9: [
    [9, 0],
    [8, 5],
  ],
  ...Object.fromEntries(
    [0, 1, 2, 3, 4, 5, 6, 7].map((minor) => [
      `v9.${minor}`,
      [
        [9, minor],
        [8, Math.min(minor + 5, 9)],
      ] as [number, number][],
    ]),
  ),
};

/** Same OS, version and features as `p`, another architecture/variant. */
function sibling(p: Platform, architecture: string, variant = ""): Platform {
  const out: Platform = { os: p.os, architecture };
  if (variant !== "") out.variant = variant;
  if (p.osVersion !== undefined) out.osVersion = p.osVersion;
  if (p.osFeatures !== undefined) out.osFeatures = p.osFeatures;
  return out;
}

/** The raw preference vector of an already-normalized platform (containerd `platformVector`). */
function vectorOf(p: Platform): Platform[] {
  const variant = p.variant ?? "";
  switch (p.architecture) {
    case "amd64": {
      const out = [p];
      const level = goAtoi(variant.replace(/^v/, ""));
      if (level !== undefined && level > 1) {
        for (let v = level - 1; v >= 1; v--) out.push(sibling(p, "amd64", `v${v}`));
      }
      out.push(sibling(p, "386"));
      return out;
    }
    case "arm": {
      const out = [p];
      const level = goAtoi(variant.replace(/^v/, ""));
      if (level !== undefined && level > 5) {
        for (let v = level - 1; v >= 5; v--) out.push(sibling(p, "arm", `v${v}`));
      }
      return out;
    }
    case "arm64": {
      const v = variant === "" ? "v8" : variant;
      const versions = ARM64_VERSIONS[v];
      // containerd quirk kept on purpose: an unknown arm64 variant (e.g. v10) yields an empty
      // vector, so Only() of it matches nothing.
      if (versions === undefined) return [];
      const out: Platform[] = [];
      for (const [major, topMinor] of versions) {
        for (let minor = topMinor; minor >= 0; minor--) {
          out.push(sibling(p, "arm64", minor === 0 ? `v${major}` : `v${major}.${minor}`));
        }
      }
      // Every arm64 v8.x/v9.x CPU also runs 32-bit arm/v8 and below.
      return [...out, ...vectorOf(sibling(p, "arm", "v8"))];
    }
    default:
      return [p];
  }
}

/** Go's strconv.Atoi: optional sign and decimal digits only. */
function goAtoi(s: string): number | undefined {
  return /^[+-]?[0-9]+$/.test(s) ? Number(s) : undefined;
}

/**
 * The platforms `only(p)` accepts, most preferred first, normalized: `linux/amd64/v3` →
 * v3, v2, amd64, 386; `linux/arm64` → arm64, arm/v8, arm/v7, arm/v6, arm/v5.
 */
export function platformVector(p: Platform): Platform[] {
  return vectorOf(normalize(p)).map((q) => normalize(q));
}

/**
 * Matches `p` and every platform it can run natively, preferring the closest
 * (arm64/v9.x also runs v9.0…v9.x-1 and v8.0…v8.x+5; arm/vN runs vN-1…v5; amd64/vN runs
 * vN-1…v1 and 386).
 */
export function only(p: Platform): MatchComparer {
  return ordered(...vectorOf(normalize(p)));
}

/** Matches only `p` itself (in any non-canonical spelling), not the platforms it can run. */
export function onlyStrict(p: Platform): MatchComparer {
  return ordered(normalize(p));
}

/**
 * Matches platforms with p's OS, OS version and features, whatever the architecture; `less`
 * ranks exact architecture matches first.
 */
export function onlyOS(p: Platform): MatchComparer {
  const want = normalize(p);
  const versionOk =
    want.os === "windows" ? windowsVersionMatcher(want.osVersion ?? "") : () => true;
  const matchOS = (candidate: Platform): boolean => {
    const got = normalize(candidate);
    return (
      got.os === want.os &&
      versionOk(candidate.osVersion ?? "") &&
      featuresSubset(got.osFeatures ?? [], want.osFeatures ?? [])
    );
  };
  const archOrder = ordered(want);
  return {
    match: matchOS,
    less(a, b) {
      const am = matchOS(a);
      if (am && !matchOS(b)) return true;
      if (!am) return false;
      return archOrder.less(a, b);
    },
  };
}
