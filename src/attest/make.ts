/**
 * The attestations of one build, per platform: SLSA provenance and the SPDX SBOM of the final
 * filesystem (plus the build context's when BUILDKIT_SBOM_SCAN_CONTEXT asks for it).
 */
import type { Dockerfile } from "../frontend/dockerfile/index.js";
import { topoSort, type GitSourceOp, type HttpSourceOp, type Vertex } from "../graph/index.js";
import { equal, format } from "../platform/index.js";
import type { AttestRequest } from "./options.js";
import {
  provenancePredicate,
  type BuildFacts,
  type GitMaterial,
  type ImageMaterial,
  type PlatformFacts,
} from "./provenance.js";
import { scanPackages, type ScanFilter } from "./sbom/scan.js";
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
  /** the build context, scanned when BUILDKIT_SBOM_SCAN_CONTEXT enables it */
  context?: { dir: string; filter: ScanFilter };
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
    req.sbom && o.context !== undefined
      ? spdxDocument(await scanPackages(o.context.dir, o.context.filter), {
          name: "context",
          created,
        })
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

/** A base image as resolved during conversion, keyed by the manifest digest the graph pins. */
export interface ResolvedImageRecord extends ImageMaterial {
  manifestDigest: string;
}

/**
 * The materials and local sources of one platform's graph: the images it pulls (by the name
 * they were written as and the digest that name resolved to), its ADD URLs with their content
 * digest, the local contexts it reads.
 */
export async function collectPlatformFacts(
  root: Vertex | undefined,
  resolved: readonly ResolvedImageRecord[],
  httpDigest: (op: HttpSourceOp) => Promise<string | undefined>,
  gitMaterial: (op: GitSourceOp) => Promise<GitMaterial | undefined>,
): Promise<PlatformFacts> {
  const facts: PlatformFacts = { images: [], http: [], git: [], locals: [], root };
  const seen = new Set<string>();
  for (const v of root ? topoSort([root]) : []) {
    const op = v.op;
    if (op.kind === "image") {
      const r = resolved.find(
        (x) =>
          x.manifestDigest === op.manifestDigest && (!v.platform || equal(x.platform, v.platform)),
      );
      const m: ImageMaterial = r
        ? { ref: r.ref, platform: r.platform, digest: r.digest }
        : {
            ref: op.ref,
            platform: v.platform ?? { os: "linux", architecture: "amd64" },
            digest: op.manifestDigest,
          };
      const key = `${m.ref} ${m.digest} ${format(m.platform)}`;
      if (!seen.has(key)) facts.images.push(m);
      seen.add(key);
    } else if (op.kind === "http") {
      const digest = await httpDigest(op);
      if (digest !== undefined && !seen.has(op.url)) facts.http.push({ url: op.url, digest });
      seen.add(op.url);
    } else if (op.kind === "git") {
      const m = await gitMaterial(op);
      if (m !== undefined && !facts.git.some((g) => g.url === m.url)) facts.git.push(m);
    } else if (op.kind === "local" && !facts.locals.includes(op.name)) facts.locals.push(op.name);
  }
  // sorted by URL, as BuildKit's capture
  facts.git.sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
  return facts;
}

export interface AttestBuildInput {
  request: AttestRequest;
  facts: BuildFacts;
  df: Dockerfile;
  target?: string;
  buildArgs: Readonly<Record<string, string>>;
  context: { dir: string; filter: ScanFilter };
  epoch?: number;
  /** image names (for the SBOM's root package) */
  names: readonly string[];
  platforms: readonly { root: Vertex | undefined; withRootfs: PlatformTarget["withRootfs"] }[];
  resolved: readonly ResolvedImageRecord[];
  httpDigest: (op: HttpSourceOp) => Promise<string | undefined>;
  gitMaterial: (op: GitSourceOp) => Promise<GitMaterial | undefined>;
}

/** Everything a build attests, per platform (the engine's one call). */
export async function attestBuild(i: AttestBuildInput): Promise<Attestation[][]> {
  const targets: PlatformTarget[] = [];
  for (const p of i.platforms) {
    targets.push({
      facts: await collectPlatformFacts(p.root, i.resolved, i.httpDigest, i.gitMaterial),
      withRootfs: p.withRootfs,
    });
  }
  return makeAttestations(i.request, i.facts, targets, {
    name: i.names[0] ?? "image",
    epoch: i.epoch,
    context: scanContextEnabled(i.df, i.target, i.buildArgs) ? i.context : undefined,
  });
}
