/** `--platform` flag values: comma-separated, repeatable, `local` meaning the host. */
import { KilnError } from "../errors.js";
import { defaultSpec } from "./host.js";
import { formatAll, normalize, parseNormalized } from "./parse.js";
import type { Platform } from "./types.js";

/**
 * Parses `--platform a,b --platform c` into normalized platforms, in order, without
 * duplicates (`linux/arm64` and `linux/arm64/v8` are one). `local` is the host platform
 * (`host` defaults to the real host). Empty entries are an error.
 */
export function parsePlatformList(values: readonly string[], host?: Platform): Platform[] {
  const seen = new Set<string>();
  const out: Platform[] = [];
  for (const value of values) {
    for (const raw of value.split(",")) {
      const item = raw.trim();
      if (item === "") {
        throw new KilnError("E_PLATFORM", `empty platform in list ${JSON.stringify(value)}`, {
          hint: "separate platforms with single commas, e.g. --platform linux/amd64,linux/arm64",
        });
      }
      const p =
        item === "local" ? normalize(host ?? defaultSpec(), host) : parseNormalized(item, host);
      const key = formatAll(p);
      if (!seen.has(key)) {
        seen.add(key);
        out.push(p);
      }
    }
  }
  return out;
}
