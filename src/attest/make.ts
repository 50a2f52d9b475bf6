/**
 * The attestations of one build, per platform: SLSA provenance and the SPDX SBOM of the final
 * filesystem (plus the build context's when BUILDKIT_SBOM_SCAN_CONTEXT asks for it).
 */
import type { Dockerfile } from "../frontend/dockerfile/index.js";
import type { AttestRequest } from "./options.js";
import { provenancePredicate, type BuildFacts, type PlatformFacts } from "./provenance.js";
import { scanPackages } from "./sbom/scan.js";
import { SPDX_PREDICATE, spdxDocument } from "./sbom/spdx.js";
import type { Attestation } from "./storage.js";

export interface PlatformTarget {
  facts: PlatformFacts;
  /** runs `fn` on a read-only view of the platform's final filesystem */
  withRootfs<T>(fn: (dir: string) => Promise<T>): Promise<T>;
}

export interface MakeOptions {
  /** what the SBOM's root package is called (the first image name, else `image`) */
  name: string;
  epoch?: number;
  /** the build context directory, scanned when BUILDKIT_SBOM_SCAN_CONTEXT enables it */
  contextDir?: string;
}

export async function makeAttestations(
  req: AttestRequest,
  facts: BuildFacts,
  targets: readonly PlatformTarget[],
  o: MakeOptions,
): Promise<Attestation[][]> {
  const created = o.epoch !== undefined ? new Date(o.epoch * 1000) : new Date();
  // the context is the same for every platform: scanned once
  const contextSbom =
    req.sbom && o.contextDir !== undefined
      ? spdxDocument(await scanPackages(o.contextDir), { name: "context", created })
      : undefined;
  const out: Attestation[][] = [];
  for (const t of targets) {
    const list: Attestation[] = [];
    if (req.sbom) {
      const packages = await t.withRootfs((dir) => scanPackages(dir));
      list.push({
        predicateType: SPDX_PREDICATE,
        predicate: spdxDocument(packages, { name: o.name, created }),
        path: req.sbom.filename,
        inlineOnly: false,
      });
      if (contextSbom !== undefined) {
        list.push({
          predicateType: SPDX_PREDICATE,
          predicate: contextSbom,
          path: "sbom-context.spdx.json",
          inlineOnly: false,
        });
      }
    }
    if (req.provenance) {
      const p = provenancePredicate(req.provenance, facts, t.facts, new Date());
      list.push({ ...p, path: req.provenance.filename, inlineOnly: req.provenance.inlineOnly });
    }
    out.push(list);
  }
  return out;
}

function enabledFor(stage: string | undefined, v: string): boolean {
  const b = v.trim().toLowerCase();
  if (["1", "t", "true"].includes(b)) return true;
  if (["0", "f", "false", ""].includes(b)) return false;
  return stage !== undefined && v.split(",").some((s) => s.trim().toLowerCase() === stage);
}

/**
 * BUILDKIT_SBOM_SCAN_CONTEXT for the target stage, as BuildKit reads it: only where the
 * Dockerfile declares the ARG (globally or in the target stage), its value from --build-arg
 * or else the declared default; `true`, `false` or a list of stage names.
 */
export function scanContextEnabled(
  df: Dockerfile,
  target: string | undefined,
  buildArgs: Readonly<Record<string, string>>,
): boolean {
  const key = "BUILDKIT_SBOM_SCAN_CONTEXT";
  const stage =
    target !== undefined
      ? df.stages.find((s) => s.name === target.toLowerCase())
      : df.stages[df.stages.length - 1];
  let value: string | undefined;
  for (const c of df.metaArgs)
    for (const a of c.args) if (a.key === key) value = buildArgs[key] ?? a.value ?? value;
  for (const c of stage?.commands ?? []) {
    if (c.kind !== "arg") continue;
    for (const a of c.args) if (a.key === key) value = buildArgs[key] ?? a.value ?? value;
  }
  return value !== undefined && enabledFor(stage?.name, value);
}
