import type { Platform } from "../platform/types.js";
import type { OciPlatform } from "./types.js";

/** JSON `platform` object → kiln's camel-cased `Platform`. Absent fields stay absent. */
export function toPlatform(p: OciPlatform): Platform {
  const out: Platform = { os: p.os, architecture: p.architecture };
  if (p.variant !== undefined && p.variant !== "") out.variant = p.variant;
  if (p["os.version"] !== undefined && p["os.version"] !== "") out.osVersion = p["os.version"];
  if (p["os.features"] !== undefined && p["os.features"].length > 0) {
    out.osFeatures = [...p["os.features"]];
  }
  return out;
}

/** kiln's `Platform` → the JSON `platform` object, in the key order of the image spec examples. */
export function fromPlatform(p: Platform): OciPlatform {
  const out: OciPlatform = { architecture: p.architecture, os: p.os };
  if (p.osVersion !== undefined && p.osVersion !== "") out["os.version"] = p.osVersion;
  if (p.osFeatures !== undefined && p.osFeatures.length > 0) out["os.features"] = [...p.osFeatures];
  if (p.variant !== undefined && p.variant !== "") out.variant = p.variant;
  return out;
}
