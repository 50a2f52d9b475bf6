/**
 * Which node builds which platform. Native beats emulated, always: a platform goes to the first
 * node configured for it, else the first whose CPU runs it, and only then to the first that can
 * emulate it (never with strict platforms). Ties keep builder order, so routing is stable and
 * repeated builds land on the node that holds their cache.
 */
import { KilnError } from "../errors.js";
import { format, onlyStrict } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

export interface NodeOffer {
  name: string;
  configured: Platform[];
  native: Platform[];
  emulated: Platform[];
}

export type RouteKind = "configured" | "native" | "emulated";

export interface Route {
  node: string;
  kind: RouteKind;
  platforms: Platform[];
}

function supports(list: Platform[], want: Platform): boolean {
  return list.some((p) => onlyStrict(p).match(want));
}

/** Groups platforms per node (one solve each); throws E_NO_NODE listing what each node offers. */
export function routePlatforms(
  platforms: readonly Platform[],
  nodes: readonly NodeOffer[],
  opts: { strict: boolean; unavailable?: readonly string[] } = { strict: false },
): Route[] {
  const routes: Route[] = [];
  const missing: Platform[] = [];
  for (const p of platforms) {
    const passes: [RouteKind, (n: NodeOffer) => boolean][] = [
      ["configured", (n) => supports(n.configured, p)],
      ["native", (n) => supports(n.native, p)],
    ];
    if (!opts.strict) passes.push(["emulated", (n) => supports(n.emulated, p)]);
    let chosen: { node: NodeOffer; kind: RouteKind } | undefined;
    for (const [kind, ok] of passes) {
      const node = nodes.find(ok);
      if (node) {
        chosen = { node, kind };
        break;
      }
    }
    if (!chosen) {
      missing.push(p);
      continue;
    }
    const r = routes.find((x) => x.node === chosen.node.name);
    if (r) {
      r.platforms.push(p);
      // a solve that emulates any of its platforms is reported as emulated
      if (chosen.kind === "emulated") r.kind = "emulated";
    } else routes.push({ node: chosen.node.name, kind: chosen.kind, platforms: [p] });
  }
  if (missing.length > 0) throw noNode(missing, nodes, opts);
  return routes;
}

function noNode(
  missing: Platform[],
  nodes: readonly NodeOffer[],
  opts: { strict: boolean; unavailable?: readonly string[] },
): KilnError {
  const lines = nodes.map((n) => {
    const native = [...n.configured, ...n.native].map(format);
    const emulated = n.emulated.map(format);
    return `  ${n.name}: native ${[...new Set(native)].join(", ") || "-"}; emulated ${emulated.join(", ") || "-"}`;
  });
  for (const u of opts.unavailable ?? []) lines.push(`  ${u}: unavailable`);
  return new KilnError(
    "E_NO_NODE",
    `no node can build ${missing.map(format).join(", ")}${opts.strict ? " natively (--strict-platforms)" : ""}; the builder's nodes offer:\n${lines.join("\n") || "  (no nodes)"}`,
    {
      hint: opts.strict
        ? "add a node that runs these platforms natively, or drop --strict-platforms to allow emulation"
        : "add a node for these platforms (kiln builder create --append), or install QEMU/binfmt on a node",
    },
  );
}
