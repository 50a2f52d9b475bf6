/**
 * One build, end to end: parse the Dockerfile once, convert it once per target platform,
 * solve all platforms' graphs together (shared vertices run once), assemble one image per
 * platform and one index, and send it to every requested output.
 */
import { readFile, stat, mkdir } from "node:fs/promises";
import { basename, relative, resolve } from "node:path";
import { KilnError, messageOf } from "../errors.js";
import { parseDockerfile, type Dockerfile } from "../frontend/dockerfile/index.js";
import { convertDockerfile, type ConvertResult } from "../frontend/dockerfile/convert.js";
import { printGraph, topoSort, type Vertex } from "../graph/index.js";
import { formatAll } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import { Solver, type KeyRecord, type VertexProgress } from "../solver/index.js";
import type { FsResult } from "../cache/index.js";
import type { ProgressSink } from "../progress/index.js";
import { loadContextFilter, saveHashCache, useHashCache } from "../context/index.js";
import { RegistryClient, dockerCredentials } from "../registry/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import { cleanupStaleContainers } from "../executor/index.js";
import { assembleImages, layerBlobsFor, type PlatformImage } from "../exporter/image.js";
import { PushAhead } from "../exporter/pushahead.js";
import { rootDescriptor } from "../exporter/outputs.js";
import {
  assembleOptionsFor,
  exportOutput,
  exportStep,
  type ExportContext,
} from "../exporter/export.js";
import { defaultRoot, openState } from "./state.js";
import { acquireBuildLock } from "./gc.js";
import { ExecutionPlanner } from "./emulation.js";
import { Images, openLayoutContexts } from "./images.js";
import { layoutImageName } from "../source/index.js";
import { BuildWorker, cleanupStaleSecrets, type LocalContext } from "./worker.js";
import { preparingWorker } from "./earlyexport.js";
import {
  imageContextRef,
  type BuildRequest,
  type BuildResult,
  type PlatformOutcome,
} from "../request/index.js";
import { BuildRemoteCache, insecureCacheHosts } from "./remotecache.js";
import { attestBuild, wantsAttestations, type ResolvedImageRecord } from "../attest/index.js";
import { randomBytes } from "node:crypto";

export interface EngineOptions {
  root?: string;
  progress: ProgressSink;
  signal?: AbortSignal;
  /** receives the merged build graph before it is solved (`--print-graph`) */
  onGraph?: (text: string) => void;
}

/** Commands that compile: slow under emulation, fast as a native cross-compile. */
const COMPILE_STEP =
  /\b(go (build|install|test)|cargo (build|install)|rustc|gcc|g\+\+|clang|cc |make\b|cmake|ninja|npm (ci|install|run build)|yarn (install|build)|pnpm (install|build)|mvn|gradle|dotnet (build|publish)|pip (install|wheel))/;

/** kiln's hint BuildKit does not give: emulated compile steps belong in a $BUILDPLATFORM stage. */
function hintCrossCompile(roots: Vertex[], progress: ProgressAdapter, sink: ProgressSink): void {
  for (const v of topoSort(roots)) {
    const f = progress.finished.get(v.digest);
    if (!f?.emulated || v.op.kind !== "exec" || !COMPILE_STEP.test(v.op.args.join(" "))) continue;
    sink.write({
      type: "warning",
      vertex: v.digest,
      message: `${v.name} ran under emulation for ${(f.ms / 1000).toFixed(1)}s`,
      detail:
        "compile natively instead: put it in a stage FROM --platform=$BUILDPLATFORM and cross-compile with ARG TARGETOS TARGETARCH (see examples/cross-compile)",
    });
  }
}

/** Reads and parses the Dockerfile; errors name the file (relative to the working directory). */
export async function readDockerfile(
  contextDir: string,
  dockerfile: string,
): Promise<{ df: Dockerfile; path: string; text: string }> {
  const path = resolve(contextDir, dockerfile);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new KilnError("E_DOCKERFILE_MISSING", `cannot read Dockerfile ${path}: ${messageOf(e)}`, {
      hint: "pass the right file with -f/--file, or run kiln in the directory that holds the Dockerfile",
    });
  }
  const shown = relative(process.cwd(), path) || basename(path);
  return { df: parseDockerfile(text, { file: shown.startsWith("..") ? path : shown }), path, text };
}

async function checkContext(dir: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
  } catch {
    // fall through
  }
  throw new KilnError("E_CONTEXT", `build context ${dir} is not a directory`, {
    hint: "give the build context directory as the last argument (e.g. `kiln build .`)",
  });
}

/** Adapts solver callbacks to progress events, and keeps per-platform figures for the summary. */
class ProgressAdapter implements VertexProgress {
  private readonly startTimes = new Map<string, number>();
  readonly finished = new Map<string, { ms: number; cached: boolean; emulated: boolean }>();
  private readonly emulated = new Set<string>();

  constructor(private readonly sink: ProgressSink) {}

  announce(v: Vertex): void {
    this.sink.write({
      type: "vertex",
      id: v.digest,
      name: v.name,
      platform: v.platform && formatAll(v.platform),
      inputs: v.inputs.map((i) => i.digest),
    });
  }
  started(v: Vertex, opts: { emulated?: boolean }): void {
    const now = Date.now();
    this.startTimes.set(v.digest, now);
    if (opts.emulated) this.emulated.add(v.digest);
    this.sink.write({
      type: "vertex",
      id: v.digest,
      name: v.name,
      started: now,
      emulated: opts.emulated,
    });
  }
  cached(v: Vertex): void {
    const now = Date.now();
    this.finished.set(v.digest, { ms: 0, cached: true, emulated: false });
    this.sink.write({
      type: "vertex",
      id: v.digest,
      name: v.name,
      started: now,
      completed: now,
      cached: true,
    });
  }
  completed(v: Vertex): void {
    const now = Date.now();
    const start = this.startTimes.get(v.digest) ?? now;
    this.finished.set(v.digest, {
      ms: now - start,
      cached: false,
      emulated: this.emulated.has(v.digest),
    });
    this.sink.write({ type: "vertex", id: v.digest, name: v.name, completed: now });
  }
  failed(v: Vertex, message: string): void {
    this.sink.write({
      type: "vertex",
      id: v.digest,
      name: v.name,
      completed: Date.now(),
      error: message,
    });
  }
}

/** Runs a build under the state dir's shared lock, so `kiln prune` never removes what it uses. */
export async function build(req: BuildRequest, opts: EngineOptions): Promise<BuildResult> {
  const root = opts.root ?? defaultRoot();
  await mkdir(root, { recursive: true, mode: 0o700 });
  const release = await acquireBuildLock(root, {
    signal: opts.signal,
    onWait: () => {
      opts.progress.write({ type: "warning", message: "waiting for `kiln prune` to finish" });
    },
  });
  try {
    return await buildLocked(req, { ...opts, root });
  } finally {
    await release();
  }
}

async function buildLocked(req: BuildRequest, opts: EngineOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const sink = opts.progress;
  await checkContext(req.contextDir);
  const {
    df,
    path: dockerfilePath,
    text: dockerfileText,
  } = await readDockerfile(req.contextDir, req.dockerfile);
  const state = await openState(opts.root);
  await state.snapshots.cleanupStale();
  await cleanupStaleContainers({ stateDir: state.root });
  await cleanupStaleSecrets();

  const epoch = sourceDateEpoch(req);
  useHashCache(state.contextHashesDir);
  const filter = await loadContextFilter(req.contextDir, dockerfilePath);
  const contexts = new Map<string, LocalContext>([
    ["context", { dir: resolve(req.contextDir), filter }],
  ]);
  const imageContexts = new Map<string, string>();
  const layouts = await openLayoutContexts(req.namedContexts);
  for (const [name, dir] of Object.entries(req.namedContexts)) {
    const layout = layouts.get(name);
    if (layout) {
      imageContexts.set(name, layoutImageName(name, layout.top.digest));
      continue;
    }
    const ref = imageContextRef(dir);
    if (ref !== undefined) {
      imageContexts.set(name, ref);
      continue;
    }
    await checkContext(dir);
    contexts.set(name, { dir: resolve(dir), filter: await loadContextFilter(dir) });
  }

  const planner = new ExecutionPlanner({
    ignoreBinfmt: req.ignoreBinfmt,
    recordFile: state.probeRecordFile,
  });
  const targets: Platform[] = req.platforms.length ? req.platforms : [planner.native];
  const insecure = [
    ...req.insecureRegistries,
    ...req.outputs.flatMap((o) =>
      o.type === "image" && o.insecure ? o.names.map((n) => registryHost(parseReference(n))) : [],
    ),
    ...insecureCacheHosts(req),
  ];
  const client = new RegistryClient({
    insecureHosts: insecure,
    auth: dockerCredentials(),
    pushedBlobs: state.metadata,
  });
  // export work started during the build: never left running once the build returns
  let background: { settle(): Promise<void> }[] = [];
  try {
    const images = new Images(state, client, sink, layouts);
    const remoteCache = await BuildRemoteCache.open(req, {
      state,
      client,
      images,
      sink,
      signal: opts.signal ?? new AbortController().signal,
    });
    // base images as the Dockerfile names them, for provenance materials
    const resolvedImages: ResolvedImageRecord[] = [];
    const conversions: ConvertResult[] = await Promise.all(
      targets.map((targetPlatform) =>
        convertDockerfile(df, {
          targetPlatform,
          buildPlatform: planner.native,
          multiPlatform: targets.length > 1,
          implicitTarget: req.platforms.length === 0,
          buildArgs: req.buildArgs,
          target: req.target,
          labels: req.labels,
          network: req.network,
          entitlements: new Set(req.allow ?? []),
          extraHosts: req.extraHosts,
          imageContexts,
          contexts: new Map(
            [...contexts].map(([k, v]) => [k, { dir: v.dir, excludePatterns: v.filter.patterns }]),
          ),
          resolveImage: async (name, platform) => {
            const r = await images.resolve(name, platform);
            resolvedImages.push({
              ref: name,
              platform,
              digest: r.resolvedDigest,
              manifestDigest: r.manifestDigest,
            });
            return r;
          },
        }),
      ),
    );
    const seen = new Set<string>();
    for (const c of conversions) {
      for (const w of c.warnings) {
        const key = `${w.message}\0${w.location?.file}:${w.location?.line}`;
        if (seen.has(key)) continue;
        seen.add(key);
        sink.write({ type: "warning", message: w.message, location: w.location });
      }
    }

    const progress = new ProgressAdapter(sink);
    const worker = new BuildWorker({
      state,
      images,
      emulation: planner,
      progress: sink,
      contexts,
      secrets: new Map(Object.entries(req.secrets)),
      ssh: new Map(Object.entries(req.ssh)),
    });
    const noCacheStages = new Set(req.noCacheFilter.map((s) => s.toLowerCase()));
    const roots = conversions.map((c) => c.root).filter((r): r is Vertex => r !== undefined);
    // layers are compressed (and pushed) as their steps end, while the build goes on
    const assembleDeps = {
      content: state.content,
      cache: state.cache,
      snapshots: state.snapshots,
      tmpDir: state.tmpDir,
    };
    const layerBlobs = layerBlobsFor(assembleDeps, {
      ...assembleOptionsFor(req.outputs, epoch),
      twins: targets.length > 1,
    });
    const pushAhead = new PushAhead(client, state.content, req.outputs);
    if (pushAhead.active) {
      layerBlobs.onBlob((b) => {
        pushAhead.blob(b);
      });
      // a layer goes up as it is compressed; with SOURCE_DATE_EPOCH its blob may well be in the
      // registry already (a reproducible rebuild), which only the usual push asks first
      if (epoch === undefined) layerBlobs.teeWith(() => pushAhead.whileWritten());
    }
    background = [layerBlobs, pushAhead];
    const solver = new Solver<FsResult>(
      preparingWorker(worker, roots, layerBlobs),
      remoteCache.results,
      progress,
      {
        maxParallelism: req.maxParallelism,
        signal: opts.signal,
        speculate: !remoteCache.imports,
        noCache: (v) =>
          req.noCache ||
          conversions.some((c) => noCacheStages.has(c.vertexStages.get(v.digest) ?? "\0")),
      },
    );
    opts.onGraph?.(printGraph(roots));
    const solved = await solver.solve(roots);
    await saveHashCache();
    hintCrossCompile(roots, progress, sink);
    const resultOf = new Map(roots.map((r, i) => [r.digest, solved[i]!]));

    const recordsOf = (v: Vertex): Promise<KeyRecord[]> => solver.records(v);
    const platformImages: PlatformImage[] = await remoteCache.withInline(
      conversions.map((c) => ({
        platform: c.platform,
        result: c.root ? resultOf.get(c.root.digest)! : { layers: [] },
        config: c.config,
        baseHistoryLength: c.baseHistoryLength,
        historyProducers: c.historyProducers,
      })),
      conversions,
      recordsOf,
    );
    const attestations = wantsAttestations(req.attestations)
      ? await exportStep(sink, "export:attest", "creating attestations", () =>
          attestBuild({
            request: req.attestations!,
            facts: {
              dockerfileName: basename(dockerfilePath),
              dockerfileText,
              buildArgs: req.buildArgs,
              labels: req.labels,
              target: req.target,
              network: req.network,
              noCache: req.noCache,
              secretIds: Object.keys(req.secrets).sort(),
              sshIds: Object.keys(req.ssh).sort(),
              builderPlatform: planner.native,
              invocationId: randomBytes(13).toString("hex").slice(0, 25),
              startedOn: new Date(t0),
            },
            df,
            target: req.target,
            buildArgs: req.buildArgs,
            context: contexts.get("context")!,
            epoch,
            names: req.outputs.flatMap((o) => ("names" in o ? o.names : [])),
            platforms: platformImages.map((img, i) => ({
              root: conversions[i]!.root,
              withRootfs: async (fn) => {
                const view = await state.snapshots.prepare(
                  `attest-${randomBytes(8).toString("hex")}`,
                  img.result.layers.map((l) => l.snapshot),
                );
                try {
                  return await fn(view.rootfs);
                } finally {
                  await view.release();
                }
              },
            })),
            resolved: resolvedImages,
            httpDigest: (op) => worker.httpDigest(op),
            gitMaterial: (op) => worker.gitMaterial(op),
          }),
        )
      : undefined;
    const assembleOpts = assembleOptionsFor(req.outputs, epoch, attestations);
    const toExport = await remoteCache.forExport(platformImages, req.outputs, assembleOpts);
    const assembled = await exportStep(sink, "export:layers", "exporting layers", () =>
      assembleImages(assembleDeps, toExport, assembleOpts, layerBlobs),
    );
    await pushAhead.settle();
    const root = rootDescriptor(assembled);
    const names: string[] = [];
    const exportCtx: ExportContext = {
      content: state.content,
      snapshots: state.snapshots,
      client,
      sink,
      tmpDir: state.tmpDir,
      assembled,
      platformImages: toExport,
      epoch,
      remoteBlobs: remoteCache.remoteBlobs,
      attestations,
    };
    for (const out of req.outputs) names.push(...(await exportOutput(out, exportCtx)));
    const cacheParts = remoteCache.exports
      ? await exportStep(sink, "export:cache", "exporting cache", () =>
          remoteCache.export(roots, recordsOf),
        )
      : [];

    const outcomes: PlatformOutcome[] = conversions.map((c, i) => {
      const vs = c.root ? topoSort([c.root]) : [];
      let emulatedMs = 0;
      let cached = 0;
      let ms = 0;
      for (const v of vs) {
        const f = progress.finished.get(v.digest);
        if (!f) continue;
        if (f.cached) cached++;
        ms += f.ms;
        if (f.emulated) emulatedMs += f.ms;
      }
      const p = assembled.platforms[i]!;
      return {
        platform: c.platform,
        manifestDigest: p.manifestDesc.digest,
        configDigest: p.configDesc.digest,
        durationMs: ms,
        emulatedMs,
        cached,
        total: vs.length,
      };
    });
    const durationMs = Date.now() - t0;
    sink.write({
      type: "summary",
      durationMs,
      platforms: outcomes.map((o) => ({
        platform: formatAll(o.platform),
        durationMs: o.durationMs,
        emulatedMs: o.emulatedMs,
        cached: o.cached,
        total: o.total,
        digest: o.manifestDigest,
      })),
    });
    return {
      platforms: outcomes,
      digest: root.digest,
      descriptor: { mediaType: root.mediaType, digest: root.digest, size: root.size },
      configDigest:
        assembled.platforms.length === 1 ? assembled.platforms[0]!.configDesc.digest : undefined,
      imageNames: names,
      durationMs,
      ...(cacheParts.length ? { cacheParts } : {}),
    };
  } finally {
    for (const b of background) await b.settle();
    client.close();
    // later builds only trust snapshots that reached the disk: wait for the last flush
    await state.snapshots.durable().catch((e: unknown) => {
      sink.write({ type: "warning", message: messageOf(e) });
    });
  }
}

function sourceDateEpoch(req: BuildRequest): number | undefined {
  const v = req.buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) {
    throw new KilnError("E_FLAG", `invalid SOURCE_DATE_EPOCH ${JSON.stringify(v)}`, {
      hint: "use whole seconds since 1970, e.g. $(git log -1 --format=%ct)",
    });
  }
  return Number(v);
}
