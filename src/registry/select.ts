import { KilnError } from "../errors.js";
import { toPlatform } from "../oci/platform.js";
import type { Descriptor, ImageIndex } from "../oci/types.js";
import { formatAll, only } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

/**
 * The manifests of an index that can run on `platform`, best first, with BuildKit's fallbacks
 * (containerd `only`): arm64 also takes arm/v8…v5, amd64/v3 takes v2, v1 and 386. Entries
 * without a platform (and attestations, `unknown/unknown`) never match.
 */
export function matchingManifests(index: ImageIndex, platform: Platform): Descriptor[] {
  const m = only(platform);
  const candidates = index.manifests
    .filter((d) => d.platform !== undefined && m.match(toPlatform(d.platform)))
    .map((d, i) => ({ d, p: toPlatform(d.platform!), i }));
  // Stable: among equally good entries the first in the index wins, as in containerd.
  candidates.sort((a, b) => (m.less(a.p, b.p) ? -1 : m.less(b.p, a.p) ? 1 : a.i - b.i));
  return candidates.map((c) => c.d);
}

/** The best manifest of an index for a platform; E_PLATFORM_NOT_FOUND lists what there is. */
export function selectPlatform(
  index: ImageIndex,
  platform: Platform,
  source = "the image index",
): Descriptor {
  const best = matchingManifests(index, platform)[0];
  if (best !== undefined) return best;
  const available = index.manifests
    .filter((d) => d.platform !== undefined && d.platform.os !== "unknown")
    .map((d) => formatAll(toPlatform(d.platform!)));
  throw new KilnError(
    "E_PLATFORM_NOT_FOUND",
    `${source} has no manifest for ${formatAll(platform)} (it has: ${available.length > 0 ? available.join(", ") : "none with a platform"})`,
    {
      hint: "choose one of the listed platforms with --platform, or use a base image that supports yours",
    },
  );
}
