/**
 * SLSA provenance of one platform's image, with the fields BuildKit records
 * (docs/attestations/slsa-definitions.md): the frontend and its arguments, every material
 * (base images by digest, ADD URLs), the local contexts, timestamps; mode=max adds the
 * Dockerfile and the build steps. Built as SLSA v1 and converted to v0.2 on request, as
 * BuildKit does. Secret values are never an input here; mode=min also drops build args,
 * labels and the ids of secrets and ssh sockets.
 */
import type { Vertex } from "../graph/index.js";
import { topoSort } from "../graph/index.js";
import { format, normalize } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import type { ProvenanceRequest } from "./options.js";
import { materialPurl } from "./purl.js";

export const SLSA_V1 = "https://slsa.dev/provenance/v1";
export const SLSA_V02 = "https://slsa.dev/provenance/v0.2";
const BUILD_TYPE_V1 =
  "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
const BUILD_TYPE_V02 = "https://mobyproject.org/buildkit@v1";

/** What the build knew that provenance records; the same for every platform. */
export interface BuildFacts {
  /** `filename` of the request: the Dockerfile's path relative to the context when inside it */
  dockerfileName: string;
  /** the Dockerfile text (mode=max only) */
  dockerfileText: string;
  buildArgs: Readonly<Record<string, string>>;
  labels: Readonly<Record<string, string>>;
  target?: string;
  network: "default" | "none" | "host";
  noCache: boolean;
  /** secret and ssh ids (never their values) */
  secretIds: readonly string[];
  sshIds: readonly string[];
  builderPlatform: Platform;
  invocationId: string;
  startedOn: Date;
}

/** A base image as the build resolved it. */
export interface ImageMaterial {
  /** the name as written (FROM, --build-context docker-image://), or oci-layout://NAME@DIGEST */
  ref: string;
  platform: Platform;
  /** what the name resolved to: the index, or the manifest of a single-platform image */
  digest: string;
}

/** ADD <git URL>: the URL (`remote#ref`, no password) and the commit it resolved to. */
export interface GitMaterial {
  url: string;
  commit: string;
}

export interface PlatformFacts {
  images: ImageMaterial[];
  http: { url: string; digest: string }[];
  git: GitMaterial[];
  /** local source names used (context, named contexts) */
  locals: string[];
  /** the platform's graph root (for mode=max steps) */
  root: Vertex | undefined;
}

type DigestSet = Record<string, string>;

function digestSet(d: string): DigestSet {
  const i = d.indexOf(":");
  return { [d.slice(0, i)]: d.slice(i + 1) };
}

interface Parameters {
  frontend: string;
  args?: Record<string, string>;
  secrets?: { id: string }[];
  ssh?: { id: string }[];
  locals?: { name: string }[];
}

function requestArgs(f: BuildFacts): Record<string, string> {
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.buildArgs)) args[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(f.labels)) args[`label:${k}`] = v;
  if (f.target) args.target = f.target;
  if (f.network !== "default") args["force-network-mode"] = f.network;
  if (f.noCache) args["no-cache"] = "";
  return Object.fromEntries(Object.entries(args).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Our op as JSON for `buildConfig`: host paths are left out (they say nothing about the image). */
function opJSON(v: Vertex): unknown {
  if (v.op.kind === "local")
    return { kind: "local", name: v.op.name, excludePatterns: v.op.excludePatterns };
  return v.op;
}

function buildConfig(root: Vertex | undefined): unknown {
  if (root === undefined) return undefined;
  const steps = topoSort([root]);
  const ids = new Map(steps.map((v, i) => [v.digest, `step${i}`]));
  return {
    llbDefinition: steps.map((v) => {
      const step: Record<string, unknown> = { id: ids.get(v.digest), op: opJSON(v) };
      if (v.inputs.length > 0) step.inputs = v.inputs.map((i) => `${ids.get(i.digest)}:0`);
      return step;
    }),
    digestMapping: Object.fromEntries(steps.map((v) => [v.digest, ids.get(v.digest)])),
  };
}

/** The SLSA v1 predicate (BuildKit's shape); `finishedOn` is when the export made it. */
export function provenanceV1(
  req: ProvenanceRequest,
  f: BuildFacts,
  p: PlatformFacts,
  finishedOn: Date,
): Record<string, unknown> {
  const materials = [
    ...p.images.map((m) => ({ uri: materialPurl(m.ref, m.platform), digest: digestSet(m.digest) })),
    ...p.git.map((g) => ({
      uri: g.url,
      digest: { [g.commit.length === 64 ? "sha256" : "sha1"]: g.commit },
    })),
    ...p.http.map((h) => ({ uri: h.url, digest: digestSet(h.digest) })),
  ];
  const request: Parameters = { frontend: "dockerfile.v0" };
  let args = requestArgs(f);
  let requestComplete = true;
  if (req.mode === "min") {
    const kept = Object.entries(args).filter(
      ([k]) => !k.startsWith("build-arg:") && !k.startsWith("label:"),
    );
    if (kept.length !== Object.keys(args).length) requestComplete = false;
    args = Object.fromEntries(kept);
  } else {
    if (f.secretIds.length > 0) request.secrets = f.secretIds.map((id) => ({ id }));
    if (f.sshIds.length > 0) request.ssh = f.sshIds.map((id) => ({ id }));
  }
  if (Object.keys(args).length > 0) request.args = args;
  // the Dockerfile comes from a local source too, as with buildx
  const locals = [...new Set([...p.locals, "dockerfile"])].sort();
  request.locals = locals.map((name) => ({ name }));

  const internal: Record<string, unknown> = {
    builderPlatform: format(normalize(f.builderPlatform)),
  };
  const buildkitMetadata: Record<string, unknown> = {};
  if (req.mode === "max") {
    internal.buildConfig = buildConfig(p.root);
    buildkitMetadata.source = {
      infos: [
        {
          filename: f.dockerfileName,
          language: "Dockerfile",
          data: Buffer.from(f.dockerfileText, "utf8").toString("base64"),
        },
      ],
    };
  }
  const metadata: Record<string, unknown> = {
    invocationId: f.invocationId,
    startedOn: f.startedOn.toISOString(),
    finishedOn: finishedOn.toISOString(),
    buildkit_metadata: buildkitMetadata,
    // local contexts are materials without a digest: the materials are never complete
    buildkit_completeness: { request: requestComplete, resolvedDependencies: false },
  };
  if (req.reproducible) metadata.buildkit_reproducible = true;
  const buildDefinition: Record<string, unknown> = {
    buildType: BUILD_TYPE_V1,
    externalParameters: { configSource: { path: f.dockerfileName }, request },
    internalParameters: internal,
  };
  if (materials.length > 0) buildDefinition.resolvedDependencies = materials;
  return {
    buildDefinition,
    runDetails: { builder: { id: req.builderId ?? "" }, metadata },
  };
}

/** BuildKit's v1 → v0.2 conversion of the same facts. */
export function toV02(v1: Record<string, unknown>): Record<string, unknown> {
  const def = v1.buildDefinition as Record<string, unknown>;
  const run = v1.runDetails as { builder: { id: string }; metadata: Record<string, unknown> };
  const ext = def.externalParameters as { configSource: { path?: string }; request: unknown };
  const internal = def.internalParameters as Record<string, unknown>;
  const m = run.metadata;
  const completeness = m.buildkit_completeness as {
    request: boolean;
    resolvedDependencies: boolean;
  };
  const out: Record<string, unknown> = {
    builder: { id: run.builder.id },
    buildType: BUILD_TYPE_V02,
    invocation: {
      configSource: ext.configSource.path ? { entryPoint: ext.configSource.path } : {},
      parameters: ext.request,
      environment: { platform: internal.builderPlatform },
    },
  };
  if (internal.buildConfig !== undefined) out.buildConfig = internal.buildConfig;
  out.metadata = {
    buildInvocationID: m.invocationId,
    buildStartedOn: m.startedOn,
    buildFinishedOn: m.finishedOn,
    completeness: {
      parameters: completeness.request,
      environment: true,
      materials: completeness.resolvedDependencies,
    },
    reproducible: m.buildkit_reproducible === true,
    "https://mobyproject.org/buildkit@v1#metadata": m.buildkit_metadata,
  };
  const deps = def.resolvedDependencies as unknown[] | undefined;
  if (deps !== undefined) out.materials = deps;
  return out;
}

/** The predicate type and predicate of the requested SLSA version. */
export function provenancePredicate(
  req: ProvenanceRequest,
  f: BuildFacts,
  p: PlatformFacts,
  finishedOn: Date,
): { predicateType: string; predicate: Record<string, unknown> } {
  const v1 = provenanceV1(req, f, p, finishedOn);
  return req.version === "v1"
    ? { predicateType: SLSA_V1, predicate: v1 }
    : { predicateType: SLSA_V02, predicate: toV02(v1) };
}
