/**
 * A build on a multi-node builder: contact the nodes, route each platform (route.ts), stream the
 * context to each chosen node once, show all nodes' progress as one view, re-route the platforms
 * of a node that is unreachable or dies, and only when every platform is built merge the
 * per-node images into one index and write the tags — a partial result is never tagged.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { applyLayer } from "../archive/index.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import {
  imageContextRef,
  type BuildRequest,
  type BuildResult,
  type OutputSpec,
} from "../request/index.js";
import { PROTOCOL_VERSION, type BuildHeader, type NodeInfo } from "../daemon/index.js";
import { createImage } from "../imagetools/index.js";
import { formatAll, parse, normalize } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import type { Descriptor } from "../oci/index.js";
import type { PlatformSummary, ProgressEvent, ProgressSink } from "../progress/index.js";
import { formatReference, parseReference, registryHost, withTag } from "../reference/index.js";
import { RegistryClient, dockerCredentials } from "../registry/index.js";
import type { Builder } from "./config.js";
import { packUpload } from "./context.js";
import { openLayoutContexts } from "../engine/images.js";
import { assembleFileOutput, type FileOutput, type NodeFiles } from "./results.js";
import { NODE_FAULTS, NodeClient, type ProgressLine } from "./node.js";
import { routePlatforms, type NodeOffer, type Route } from "./route.js";
import { checkRemoteCaches, mergeNodeCaches, nodeCacheTo } from "./cache.js";

export interface RemoteBuildOptions {
  progress: ProgressSink;
  signal?: AbortSignal;
  /** never route a platform to a node that would emulate it */
  strictPlatforms: boolean;
}

type ImageOutput = Extract<OutputSpec, { type: "image" }>;

export async function remoteBuild(
  req: BuildRequest,
  builder: Builder,
  opts: RemoteBuildOptions,
): Promise<BuildResult> {
  const t0 = Date.now();
  const sink = opts.progress;
  const warn = (message: string): void => {
    sink.write({ type: "warning", message });
  };
  const { pushes, files } = checkOutputs(req, warn);
  checkRemoteCaches(req);
  if (Object.keys(req.ssh).length > 0) {
    throw new KilnError("E_REMOTE_SSH", "--ssh cannot be forwarded to a remote builder", {
      hint: "build with the embedded engine (--builder default) to use --ssh",
    });
  }

  const clients = new Map(builder.nodes.map((n) => [n.name, new NodeClient(n)]));
  const offers: NodeOffer[] = [];
  const dead: string[] = [];
  await step(sink, "remote:nodes", `contacting nodes of builder ${builder.name}`, async () => {
    const infos = await Promise.all(
      builder.nodes.map((n) =>
        clients
          .get(n.name)!
          .info()
          .then(
            (info) => ({ n, info }),
            (e: unknown) => ({ n, e }),
          ),
      ),
    );
    for (const x of infos) {
      if ("e" in x) {
        dead.push(x.n.name);
        warn(`node ${x.n.name} is unreachable (${messageOf(x.e)}); routing around it`);
        continue;
      }
      offers.push(offerOf(x.n.name, x.n.platforms, x.info));
    }
  });
  if (offers.length === 0) {
    throw new KilnError("E_NO_NODE", `no node of builder ${builder.name} is reachable`, {
      hint: "start kilnd on the nodes (kiln builder inspect shows each node's state)",
    });
  }
  const strict = opts.strictPlatforms;
  const routes: Route[] =
    req.platforms.length === 0
      ? [{ node: offers[0]!.name, kind: "native", platforms: [] }]
      : routePlatforms(req.platforms, offers, { strict, unavailable: dead });
  if (Object.keys(req.secrets).length > 0) {
    for (const r of routes) {
      if (!clients.get(r.node)!.secure) {
        throw new KilnError(
          "E_SECRET_INSECURE",
          `node ${r.node} is reached over plain TCP; secrets are never sent that way`,
          { hint: "give the node mutual TLS, or use a unix socket" },
        );
      }
    }
  }
  announceRoutes(sink, routes);

  const dockerfile = resolve(req.contextDir, req.dockerfile);
  // resolved here, as buildx does: a bad layout fails before anything is sent
  const layouts = await openLayoutContexts(req.namedContexts);
  const upload = {
    contextDir: req.contextDir,
    dockerfile,
    namedContexts: req.namedContexts,
    layouts,
  };
  const names = Object.keys(req.namedContexts);
  const headerFor = (platforms: Platform[]): BuildHeader => {
    const request: Partial<BuildRequest> = {
      ...req,
      platforms,
      tags: [],
      outputs: [...pushes.map(nodeOutput), ...files.map((o) => fileOutput(o, req.platforms))],
      cacheTo: nodeCacheTo(req.cacheTo),
    };
    // local paths travel as tar members, secrets base64-encoded
    delete request.contextDir;
    delete request.dockerfile;
    delete request.namedContexts;
    delete request.secrets;
    return {
      protocol: PROTOCOL_VERSION,
      request: request as BuildHeader["request"],
      dockerfile: basename(dockerfile),
      namedContexts: names.filter((n) => imageContextRef(req.namedContexts[n]!) === undefined),
      imageContexts: Object.fromEntries(
        names
          .filter((n) => imageContextRef(req.namedContexts[n]!) !== undefined)
          .map((n) => [n, req.namedContexts[n]!]),
      ),
      ociLayouts: Object.fromEntries([...layouts].map(([n, l]) => [n, l.top.digest])),
      secrets: Object.fromEntries(
        Object.entries(req.secrets).map(([k, v]) => [k, v.toString("base64")]),
      ),
    };
  };

  const abort = new AbortController();
  const onOuterAbort = (): void => {
    abort.abort(opts.signal?.reason);
  };
  opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
  const view = new MergedView(sink);
  const results: (NodeFiles & { node: string })[] = [];
  // file outputs come back per request; a lost node's partial files are simply not used
  const tmpRoot = await mkdtemp(join(tmpdir(), "kiln-remote-"));

  const runRoute = async (route: Route): Promise<void> => {
    const client = clients.get(route.node)!;
    const attempt = view.begin(route.node);
    const dir = join(tmpRoot, String(attempt));
    try {
      const result = await client.build(
        headerFor(route.platforms),
        packUpload(upload),
        (line) => {
          view.forward(attempt, line);
        },
        {
          signal: abort.signal,
          onFiles: async (tar) => {
            await mkdir(dir);
            await applyLayer(tar, dir, { whiteouts: "delete" });
          },
        },
      );
      results.push({ node: route.node, result, dir });
      return;
    } catch (e) {
      if (!isKilnError(e) || !NODE_FAULTS.has(e.code) || abort.signal.aborted) throw e;
      view.lost(attempt, route.node);
      dead.push(route.node);
      const lost = `node ${route.node} failed (${e.message})`;
      const alive = offers.filter((o) => !dead.includes(o.name));
      let next: Route[];
      try {
        next =
          route.platforms.length === 0
            ? alive.slice(0, 1).map((o) => ({ node: o.name, kind: "native", platforms: [] }))
            : routePlatforms(route.platforms, alive, { strict, unavailable: dead });
        if (next.length === 0) throw new KilnError("E_NO_NODE", "no node is left");
      } catch (re) {
        throw new KilnError("E_NODE_LOST", `${lost}, and ${messageOf(re)}`, {
          hint: isKilnError(re) ? re.hint : undefined,
        });
      }
      const what = route.platforms.map(formatAll).join(", ") || "the build";
      warn(`${lost}; re-routing ${what} to ${next.map((r) => `${r.node} (${r.kind})`).join(", ")}`);
      announceRoutes(sink, next);
      await all(next.map(runRoute), abort);
    }
  };
  let merged: Awaited<ReturnType<typeof mergeAndTag>>;
  let layoutRoot: Descriptor | undefined;
  try {
    await all(routes.map(runRoute), abort);
    // the merged index lists platforms in the requested order, whichever node finished first,
    // so equal builds give equal digests
    const rank = (r: NodeFiles): number =>
      Math.min(
        ...r.result.platforms.map((o) =>
          req.platforms.findIndex((p) => formatAll(p) === formatAll(o.platform)),
        ),
      );
    results.sort((x, y) => rank(x) - rank(y));
    for (const [k, o] of files.entries()) {
      const root = await step(
        sink,
        `remote:files:${k}`,
        `assembling ${o.type} output ${o.dest}`,
        () => assembleFileOutput(o, pushes.length + k, results, tmpRoot),
      );
      layoutRoot ??= root;
    }
    merged = await mergeAndTag(req, pushes, results, sink);
    await mergeNodeCaches(req, results, sink, (id, name, fn) => step(sink, id, name, fn));
  } finally {
    opts.signal?.removeEventListener("abort", onOuterAbort);
    await rm(tmpRoot, { recursive: true, force: true });
  }

  const platforms = results.flatMap((r) => r.result.platforms);
  const durationMs = Date.now() - t0;
  sink.write({ type: "summary", durationMs, platforms: view.summaries() });
  const root =
    merged ?? layoutRoot ?? (results.length === 1 ? results[0]!.result.descriptor : undefined);
  return {
    platforms,
    digest: root?.digest ?? "",
    descriptor: root
      ? { mediaType: root.mediaType, digest: root.digest, size: root.size }
      : { mediaType: "", digest: "", size: 0 },
    configDigest: platforms.length === 1 ? platforms[0]!.configDigest : undefined,
    imageNames: merged?.names ?? [],
    durationMs,
  };
}

/** Runs all, aborting the rest on the first failure; waits for every one to settle. */
async function all(tasks: Promise<void>[], abort: AbortController): Promise<void> {
  const settled = await Promise.allSettled(
    tasks.map((t) =>
      t.catch((e: unknown) => {
        if (!abort.signal.aborted) abort.abort(e);
        throw e;
      }),
    ),
  );
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw abort.signal.reason ?? failed.reason;
}

/** A node as routing sees it, under the name the builder gives it (kilnd has its own). */
function offerOf(name: string, configured: string[], info: NodeInfo): NodeOffer {
  const p = (s: string): Platform => normalize(parse(s));
  return {
    name,
    configured: [...new Set([...configured, ...info.configured])].map(p),
    native: info.native.map(p),
    emulated: info.emulated.map(p),
  };
}

/** Remote builds push (per node, by digest) or stream files back; nothing else leaves a node. */
function checkOutputs(
  req: BuildRequest,
  warn: (m: string) => void,
): { pushes: ImageOutput[]; files: FileOutput[] } {
  const pushes: ImageOutput[] = [];
  const files: FileOutput[] = [];
  for (const o of req.outputs) {
    if (o.type === "image" && o.push) pushes.push(o);
    else if (o.type === "image") {
      warn(
        "a remote builder keeps no local image store; the result stays only in the nodes' caches",
      );
    } else if (o.type === "oci" || o.type === "local") files.push(o);
    else {
      throw new KilnError(
        "E_REMOTE_OUTPUT",
        `type=${o.type} outputs are not supported with a remote builder yet`,
        { hint: "use --push, type=oci or type=local, or build with --builder default" },
      );
    }
  }
  return { pushes, files };
}

/** A file output as a node gets it: the node picks the place; platforms split when several. */
function fileOutput(o: FileOutput, platforms: readonly Platform[]): FileOutput {
  if ("names" in o) return { ...o, dest: "" };
  return { ...o, dest: "", platformSplit: o.platformSplit ?? platforms.length > 1 };
}

/** What a node is asked to push: its platforms by digest, into each repository, no tags. */
function nodeOutput(o: ImageOutput): ImageOutput {
  return {
    ...o,
    names: o.names.map((n) => {
      const r = parseReference(n);
      return `${r.registry}/${r.repository}`;
    }),
    pushByDigest: true,
    nameCanonical: false,
  };
}

async function mergeAndTag(
  req: BuildRequest,
  pushes: ImageOutput[],
  results: readonly NodeFiles[],
  sink: ProgressSink,
): Promise<{ mediaType: string; digest: string; size: number; names: string[] } | undefined> {
  if (pushes.length === 0) return undefined;
  const insecure = [
    ...req.insecureRegistries,
    ...pushes.flatMap((o) =>
      o.insecure ? o.names.map((n) => registryHost(parseReference(n))) : [],
    ),
  ];
  const client = new RegistryClient({ insecureHosts: insecure, auth: dockerCredentials() });
  try {
    let last: { mediaType: string; digest: string; size: number } | undefined;
    const names: string[] = [];
    for (const o of pushes) {
      const tags = o.names.map((n) => {
        const r = parseReference(n);
        return formatReference(
          r.tag === undefined && r.digest === undefined ? withTag(r, "latest") : r,
        );
      });
      const first = parseReference(o.names[0]!);
      const sources = results.map(
        (r) => `${first.registry}/${first.repository}@${r.result.digest}`,
      );
      const created = await step(
        sink,
        `remote:merge:${tags.join(",")}`,
        `merging ${results.length} node result(s) into ${tags.join(", ")}`,
        () => createImage(client, { tags, sources }),
      );
      last = {
        mediaType: created.descriptor.mediaType,
        digest: created.descriptor.digest,
        size: created.descriptor.size,
      };
      names.push(...created.pushed);
    }
    return last && { ...last, names };
  } finally {
    client.close();
  }
}

function announceRoutes(sink: ProgressSink, routes: Route[]): void {
  for (const r of routes) {
    const now = Date.now();
    sink.write({
      type: "vertex",
      id: `remote:route:${r.node}:${now}:${r.platforms.map(formatAll).join(",")}`,
      name: `[${r.node}] routed ${r.platforms.map(formatAll).join(", ") || "default platform"} (${r.kind})`,
      started: now,
      completed: now,
    });
  }
}

/**
 * All nodes' progress as one view: vertex ids are prefixed per request (a node may serve two
 * requests of one build), names carry `[node]`, and a lost node's running steps are closed.
 */
class MergedView {
  #attempts = 0;
  readonly #open = new Map<number, Map<string, string>>();
  readonly #summaries: PlatformSummary[] = [];
  readonly #nodes = new Map<number, string>();

  constructor(private readonly sink: ProgressSink) {}

  /** A new request to `node` (the builder's name for it); returns its attempt number. */
  begin(node: string): number {
    const n = this.#attempts++;
    this.#open.set(n, new Map());
    this.#nodes.set(n, node);
    return n;
  }

  forward(attempt: number, line: ProgressLine): void {
    // named as in the builder, whatever the daemon calls itself
    const node = this.#nodes.get(attempt)!;
    const ev: ProgressEvent = { ...line };
    delete (ev as Partial<ProgressLine>).node;
    const p = `${node}#${attempt}:`;
    switch (ev.type) {
      case "vertex": {
        const open = this.#open.get(attempt)!;
        const name = `[${node}] ${ev.name}`;
        if (ev.started !== undefined && ev.completed === undefined) open.set(p + ev.id, name);
        if (ev.completed !== undefined) open.delete(p + ev.id);
        this.sink.write({
          ...ev,
          id: p + ev.id,
          name,
          node,
          inputs: ev.inputs?.map((i) => p + i),
        });
        return;
      }
      case "log":
        this.sink.write({ ...ev, vertex: p + ev.vertex });
        return;
      case "status":
        this.sink.write({ ...ev, vertex: p + ev.vertex });
        return;
      case "warning":
        this.sink.write({
          ...ev,
          vertex: ev.vertex === undefined ? undefined : p + ev.vertex,
          message: `[${node}] ${ev.message}`,
        });
        return;
      case "summary":
        this.#summaries.push(...ev.platforms);
        return;
    }
  }

  /** Closes the steps a lost node was running, as canceled (the platforms are re-routed). */
  lost(attempt: number, node: string): void {
    const now = Date.now();
    for (const [id, name] of this.#open.get(attempt) ?? []) {
      this.sink.write({
        type: "vertex",
        id,
        name,
        completed: now,
        error: `node ${node} lost: canceled`,
      });
    }
    this.#open.delete(attempt);
  }

  summaries(): PlatformSummary[] {
    return this.#summaries;
  }
}

async function step<T>(
  sink: ProgressSink,
  id: string,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  sink.write({ type: "vertex", id, name, started: Date.now() });
  try {
    const r = await fn();
    sink.write({ type: "vertex", id, name, completed: Date.now() });
    return r;
  } catch (e) {
    sink.write({ type: "vertex", id, name, completed: Date.now(), error: messageOf(e) });
    throw e;
  }
}
