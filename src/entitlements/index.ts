/**
 * Entitlements: what a build may do beyond the sandbox (BuildKit's names). The client asks
 * with `kiln build --allow`; a build node grants only what `kilnd
 * --allow-insecure-entitlement` lets it; the Dockerfile frontend refuses a step that needs
 * one the build was not given.
 */
import { KilnError } from "../errors.js";

export const ENTITLEMENTS = ["network.host", "security.insecure"] as const;
export type Entitlement = (typeof ENTITLEMENTS)[number];

const isEntitlement = (v: string): v is Entitlement =>
  (ENTITLEMENTS as readonly string[]).includes(v);

/** Parses flag values (repeatable, comma-separated allowed); unknown names are errors. */
export function parseEntitlements(values: readonly string[], flag: string): Entitlement[] {
  const out = new Set<Entitlement>();
  for (const v of values.flatMap((x) => x.split(","))) {
    const name = v.trim();
    if (!isEntitlement(name)) {
      throw new KilnError("E_FLAG", `${flag}: unknown entitlement ${JSON.stringify(name)}`, {
        hint: `entitlements: ${ENTITLEMENTS.join(", ")}`,
      });
    }
    out.add(name);
  }
  return [...out];
}

/** A build node refuses a request asking for more than its operator granted. */
export function checkGranted(requested: readonly string[], granted: readonly Entitlement[]): void {
  for (const e of requested) {
    if (!granted.includes(e as Entitlement)) {
      throw new KilnError(
        "E_ENTITLEMENT",
        `granting entitlement ${e} is not allowed by build daemon configuration`,
        { hint: `start kilnd with --allow-insecure-entitlement ${e}` },
      );
    }
  }
}

/** The hint for a step that needs an entitlement the build was not given. */
export function entitlementHint(e: Entitlement): string {
  return `pass --allow ${e} to kiln build (a kilnd node must also run with --allow-insecure-entitlement ${e})`;
}
