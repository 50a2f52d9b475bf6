/**
 * The worker: executes one vertex of the build graph on this machine — pulls image layers
 * into snapshots, runs RUN steps with runc (through QEMU when the platform needs it), applies
 * file operations — and returns the resulting stack of layers.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rm, stat, writeFile, chown } from "node:fs/promises";
import { join, relative } from "node:path";
import { KilnError } from "../errors.js";
import {
  canonicalJSON,
  sha256,
  type Chown,
  type ExecMount,
  type ExecOp,
  type FileOp,
  type GitSourceOp,
  type HttpSourceOp,
  type Vertex,
} from "../graph/index.js";
import type { Worker, RunContext } from "../solver/index.js";
import type { FsResult, LayerRecord } from "../cache/index.js";
import type { KilnState } from "./state.js";
import {
  copyDestinationFacts,
  copyInto,
  mkdirIn,
  mkfileIn,
  parseChmod,
  resolveInRoot,
  resolveOwner,
  rmIn,
  type CopySource,
  type Owner,
} from "../fileops/index.js";
import {
  contextChecksum,
  hidesAnythingUnder,
  resultChecksum,
  type ContextFilter,
} from "../context/index.js";
import { runContainer, type Mount as ExecutorMount } from "../executor/index.js";
import { stepSnapshotId, type ActiveMount } from "../snapshot/index.js";
import type { ExecutionPlanner } from "./emulation.js";
import { CacheMounts } from "./cachemounts.js";
import { formatAll } from "../platform/index.js";
import { isOwnerAlive, ownerTag, runChecked } from "../process/index.js";
import type { ImagePuller } from "./images.js";
import type { ProgressSink } from "../progress/index.js";
import { GitSource, HttpSource } from "../source/index.js";

/** A local build context as the build was given it: its directory and ignore rules. */
export type LocalContext = { dir: string; filter: ContextFilter };

export interface WorkerOptions {
  state: KilnState;
  images: ImagePuller;
  emulation: ExecutionPlanner;
  progress: ProgressSink;
  /** local build contexts by name ("context" is the main one) */
  contexts: Map<string, LocalContext>;
  secrets: Map<string, Buffer>;
  /** ssh agent sockets by id ("default" from SSH_AUTH_SOCK) */
  ssh: Map<string, string>;
}

const OUTPUT_TAIL_LINES = 12;
const SECRETS_DIR = "/dev/shm";
const SECRET_PREFIX = "kiln-secret-";

/** Removes the secret files of kiln processes that died in a RUN (e.g. SIGKILL). */
export async function cleanupStaleSecrets(): Promise<void> {
  for (const name of await readdir(SECRETS_DIR).catch(() => [] as string[])) {
    const owner = /^kiln-secret-(\d+-\d+)-[0-9a-f]+$/.exec(name)?.[1];
    if (owner === undefined || (await isOwnerAlive(owner))) continue;
    await rm(join(SECRETS_DIR, name), { recursive: true, force: true });
  }
}

/** A KilnError of a step, prefixed with the step's name (which says the Dockerfile line). */
function stepError(v: Vertex, e: unknown): unknown {
  return e instanceof KilnError
    ? new KilnError(e.code, `${v.name}: ${e.message}`, { hint: e.hint, cause: e })
    : e;
}

async function named<T>(v: Vertex, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw stepError(v, e);
  }
}

function mountSourceMissing(v: Vertex, m: ExecMount & { type: "bind" }, from: string): KilnError {
  return new KilnError(
    "E_MOUNT_SOURCE",
    `${v.name}: mount source ${JSON.stringify(m.source)} not found in ${from}`,
    {
      hint: "check source= of the --mount; it is relative to the root of from= (default: the build context)",
    },
  );
}

export class BuildWorker implements Worker<FsResult> {
  private readonly cacheMounts: CacheMounts;
  private readonly http: HttpSource;
  private readonly git: GitSource;
  /** context checksums taken in this build, by context and path */
  private readonly checksums = new Map<LocalContext, Map<string, Promise<string>>>();
  /** checksums of what steps read from other steps' results, by input digest and paths */
  private readonly resultChecksums = new Map<string, Promise<string>>();
  /** the layer of each COPY that twins may share (see copyTwin), by its key */
  private readonly copyTwins = new Map<
    string,
    { facts: string; layer: Promise<LayerRecord | undefined> }
  >();

  constructor(private readonly o: WorkerOptions) {
    // as BuildKit, an ADD of a git URL authenticates with the agent forwarded with
    // --ssh default and the GIT_AUTH_TOKEN / GIT_AUTH_HEADER secrets
    this.git = new GitSource({ sshAuthSock: o.ssh.get("default"), secrets: o.secrets });
    this.http = new HttpSource({
      recordsDir: join(o.state.root, "http"),
      content: o.state.content,
      secrets: o.secrets,
    });
    this.cacheMounts = new CacheMounts(o.state.cacheMountsDir, o.state.metadata, (message) => {
      o.progress.write({ type: "warning", message });
    });
  }

  /** The content digest an ADD <url> step used (for provenance). */
  httpDigest(op: HttpSourceOp): Promise<string | undefined> {
    return this.http.contentDigest(op);
  }

  /** The provenance material of an ADD <git URL> step (its URL and commit). */
  gitMaterial(op: GitSourceOp): Promise<{ url: string; commit: string } | undefined> {
    return this.git.material(op);
  }

  emulated(v: Vertex): boolean {
    return (
      v.op.kind === "exec" &&
      v.platform !== undefined &&
      this.o.emulation.needsEmulation(v.platform)
    );
  }

  async contentKey(v: Vertex, signal: AbortSignal): Promise<string | undefined> {
    // an http source is keyed on the URL's current content (a request unless --checksum pins it)
    if (v.op.kind === "http") return this.http.cacheKey(v.op, signal);
    // a git source is keyed on the commit its ref resolves to now
    if (v.op.kind === "git") return named(v, this.git.cacheKey(v.op, signal));
    const parts: string[] = [];
    for (const { input, path } of this.contextReads(v)) {
      parts.push(await this.checksum(this.localContext(input)!, path));
    }
    return parts.length ? parts.join(",") : undefined;
  }

  /** One walk of a context path per build: every platform's COPY of it has the same key part. */
  private checksum(ctx: LocalContext, path: string): Promise<string> {
    let byPath = this.checksums.get(ctx);
    if (!byPath) this.checksums.set(ctx, (byPath = new Map<string, Promise<string>>()));
    let sum = byPath.get(path);
    if (!sum) byPath.set(path, (sum = contextChecksum(ctx.dir, ctx.filter, [path])));
    return sum;
  }

  keyReadsContent(v: Vertex): boolean {
    return v.op.kind === "http" || v.op.kind === "git" || this.contextReads(v).length > 0;
  }

  contentInputs(v: Vertex): number[] {
    return [...this.resultReads(v).keys()];
  }

  inputChecksum(v: Vertex, index: number, input: FsResult, signal: AbortSignal): Promise<string> {
    signal.throwIfAborted();
    const paths = this.resultReads(v).get(index) ?? [];
    // every platform's COPY --from of one $BUILDPLATFORM stage reads the same result
    const key = `${v.inputs[index]!.digest}\0${paths.join("\0")}`;
    let sum = this.resultChecksums.get(key);
    if (!sum) {
      sum = (async () => {
        const view = await this.view(input.layers, v.digest);
        try {
          return await resultChecksum(view.rootfs, paths);
        } finally {
          await view.release();
        }
      })();
      this.resultChecksums.set(key, sum);
      sum.catch(() => this.resultChecksums.delete(key));
    }
    return named(v, sum);
  }

  /**
   * The paths a step only reads from the results of other steps, by input: a COPY --from's
   * sources, a read-only bind mount's source. An input it also writes to or builds on (the
   * stage it copies into, a RUN's root, a read-write or cache mount's source) is not one: its
   * whole result matters. Images and contexts have content keys of their own.
   */
  private resultReads(v: Vertex): Map<number, string[]> {
    const reads = new Map<number, string[]>();
    const whole = new Set<number>();
    const add = (index: number, path: string) => {
      const kind = v.inputs[index]?.op.kind;
      if (kind !== "exec" && kind !== "file" && kind !== "merge") return;
      reads.set(index, [...(reads.get(index) ?? []), path]);
    };
    if (v.op.kind === "file") {
      whole.add(v.op.dest);
      for (const a of v.op.actions) {
        if (a.action !== "copy") continue;
        // --parents copies what matches below its pivot (`/./`, else the root): all of it
        // counts, more than is copied but never less
        const pivot = a.src.indexOf("/./");
        add(a.input, !a.parents ? a.src : pivot < 0 ? "/" : a.src.slice(0, pivot));
      }
    } else if (v.op.kind === "exec") {
      whole.add(0);
      for (const m of v.op.mounts) {
        if (m.type === "bind" && m.readonly) add(m.input, m.source);
        else if ((m.type === "bind" || m.type === "cache") && m.input !== undefined)
          whole.add(m.input);
      }
    }
    for (const n of whole) reads.delete(n);
    return reads;
  }

  /** The build-context paths a step reads (COPY sources, bind mounts of a context). */
  private contextReads(v: Vertex): { input: Vertex; path: string }[] {
    const reads: { input: Vertex; path: string }[] = [];
    const add = (input: Vertex | undefined, path: string) => {
      if (input?.op.kind === "local") reads.push({ input, path });
    };
    if (v.op.kind === "file") {
      for (const a of v.op.actions) if (a.action === "copy") add(v.inputs[a.input], a.src);
    } else if (v.op.kind === "exec") {
      for (const m of v.op.mounts) if (m.type === "bind") add(v.inputs[m.input], m.source);
    }
    return reads;
  }

  private localContext(input: Vertex | undefined): LocalContext | undefined {
    if (input?.op.kind !== "local") return undefined;
    const ctx = this.o.contexts.get(input.op.name);
    if (!ctx) {
      throw new KilnError("E_CONTEXT", `build context ${input.op.name} was not provided`, {
        hint: `pass it with --build-context ${input.op.name}=<dir>`,
      });
    }
    return ctx;
  }

  async run(v: Vertex, inputs: FsResult[], ctx: RunContext): Promise<FsResult> {
    switch (v.op.kind) {
      case "image":
        // a pulled base is mostly followed by RUN steps: probe their emulator meanwhile
        if (v.platform) this.o.emulation.prepare(v.platform);
        return { layers: await this.o.images.pull(v, ctx.signal) };
      case "local":
        return { layers: [] };
      case "merge":
        return { layers: inputs.flatMap((i) => i.layers) };
      case "exec":
        return this.exec(v, v.op, inputs, ctx);
      case "file":
        return this.file(v, v.op, inputs, ctx);
      case "http":
      case "git": {
        const op = v.op;
        const active = await this.o.state.snapshots.prepare(
          stepSnapshotId("active", ctx.cacheKey),
          [],
        );
        try {
          if (op.kind === "http") await this.http.writeFile(op, active.rootfs, ctx.signal);
          else await named(v, this.git.writeTree(op, active.rootfs, ctx.signal));
          return await this.commitLayer(v, active, { layers: [] }, ctx.cacheKey);
        } finally {
          await active.release();
        }
      }
    }
  }

  /**
   * Commits the active mount as a new layer — also when the step changed nothing: BuildKit keeps
   * such steps as empty layers (the image's layer count and history match it).
   */
  private async commitLayer(
    v: Vertex,
    active: ActiveMount,
    base: FsResult,
    key: string,
  ): Promise<FsResult> {
    const id = stepSnapshotId(v.op.kind, key);
    await this.o.state.snapshots.commit(active.id, active, id);
    const layer: LayerRecord = {
      snapshot: id,
      producer: v.digest,
      created: new Date().toISOString(),
    };
    return { layers: [...base.layers, layer] };
  }

  /** A throwaway read-write view of an input's filesystem (for bind mounts and COPY --from). */
  private async view(layers: LayerRecord[], key: string): Promise<ActiveMount> {
    return this.o.state.snapshots.prepare(
      stepSnapshotId("view", key),
      layers.map((l) => l.snapshot),
    );
  }

  private async exec(
    v: Vertex,
    op: ExecOp,
    inputs: FsResult[],
    ctx: RunContext,
  ): Promise<FsResult> {
    const root = inputs[0] ?? { layers: [] };
    const platform = v.platform;
    if (!platform) throw new KilnError("E_INTERNAL", `${v.name}: exec without a platform`);
    const plan = await this.o.emulation.plan(platform);
    const active = await this.o.state.snapshots.prepare(
      stepSnapshotId("active", ctx.cacheKey),
      root.layers.map((l) => l.snapshot),
    );
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const mounts: ExecutorMount[] = [];
      const env = [...op.env];
      for (const m of op.mounts) {
        const mounted = await this.mountFor(v, m, inputs, ctx, cleanups);
        if (mounted.mount) mounts.push(mounted.mount);
        if (mounted.env) env.push(mounted.env);
      }
      const tail: string[] = [];
      const onOutput = (stream: 1 | 2) => (chunk: Buffer) => {
        const data = chunk.toString("utf8");
        this.o.progress.write({
          type: "log",
          vertex: v.digest,
          stream,
          data,
          timestamp: Date.now(),
        });
        for (const line of data.split("\n")) if (line) tail.push(line);
        if (tail.length > OUTPUT_TAIL_LINES) tail.splice(0, tail.length - OUTPUT_TAIL_LINES);
      };
      const result = await runContainer(
        {
          rootfs: active.rootfs,
          args: op.args,
          env,
          cwd: op.cwd,
          user: op.user,
          hostname: op.hostname ?? "buildkitsandbox",
          network: op.network === "none" ? "none" : "host",
          ...(op.security ? { security: op.security } : {}),
          extraHosts: op.extraHosts ?? [],
          mounts,
          emulator: plan.emulator ? { hostPath: plan.emulator.path } : undefined,
        },
        { onStdout: onOutput(1), onStderr: onOutput(2), signal: ctx.signal },
        { stateDir: this.o.state.root },
      );
      if (result.exitCode !== 0) {
        throw await this.o.emulation.explainFailure({
          vertex: v,
          platform,
          args: op.args,
          exitCode: result.exitCode,
          output: tail,
          rootfs: active.rootfs,
          plan,
        });
      }
      return await this.commitLayer(v, active, root, ctx.cacheKey);
    } finally {
      for (const c of cleanups.reverse()) await c().catch(() => undefined);
      await active.release();
    }
  }

  private async mountFor(
    v: Vertex,
    m: ExecMount,
    inputs: FsResult[],
    ctx: RunContext,
    cleanups: (() => Promise<void>)[],
  ): Promise<{ mount?: ExecutorMount; env?: string }> {
    switch (m.type) {
      case "bind": {
        const input = v.inputs[m.input];
        const local = this.localContext(input);
        if (local) {
          const source = await resolveInRoot(local.dir, m.source, { followFinal: true });
          const found = await stat(source).catch(() => undefined);
          if (!found) throw mountSourceMissing(v, m, "the build context");
          const rel = relative(local.dir, source);
          if (m.readonly && !(await hidesAnythingUnder(local.dir, local.filter, rel)))
            return { mount: { type: "bind", source, target: m.target, readonly: true } };
          // BuildKit mounts its synced copy of the context: no .dockerignore'd files, and `rw`
          // writes land in a throwaway copy, never in the user's files
          const copy = await this.view([], ctx.cacheKey);
          cleanups.push(() => copy.release());
          const dest = found.isDirectory() ? "/" : "/file";
          await copyInto(copy.rootfs, this.contextSource(input, local), {
            src: `/${rel}`,
            dest,
            dirContents: true,
            allowWildcard: false,
            allowEmptyWildcard: false,
            excludes: [],
            parents: false,
          });
          const path = join(copy.rootfs, dest);
          return { mount: { type: "bind", source: path, target: m.target, readonly: m.readonly } };
        }
        const view = await this.view(inputs[m.input]?.layers ?? [], ctx.cacheKey);
        cleanups.push(() => view.release());
        const source = await resolveInRoot(view.rootfs, m.source, { followFinal: true });
        if (!(await stat(source).catch(() => undefined)))
          throw mountSourceMissing(v, m, "the from= source");
        return { mount: { type: "bind", source, target: m.target, readonly: m.readonly } };
      }
      case "cache": {
        const cache = await this.cacheMounts.acquire(
          {
            id: m.id,
            sharing: m.sharing,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            user: v.platform ? formatAll(v.platform) : "build",
          },
          ctx.signal,
        );
        cleanups.push(() => {
          cache.release();
          return Promise.resolve();
        });
        if (cache.created && m.input !== undefined) {
          // `from=`: a new cache starts as a copy of that path of the source
          const view = await this.view(inputs[m.input]?.layers ?? [], ctx.cacheKey);
          try {
            const src = await resolveInRoot(view.rootfs, m.source ?? "/", { followFinal: true });
            await runChecked("cp", ["-a", "--", `${src}/.`, cache.dir], {
              errorCode: "E_CACHE_MOUNT",
            });
          } finally {
            await view.release();
          }
        }
        return {
          mount: { type: "bind", source: cache.dir, target: m.target, readonly: m.readonly },
        };
      }
      case "tmpfs":
        return { mount: { type: "tmpfs", target: m.target, size: m.size } };
      case "secret": {
        const value = this.o.secrets.get(m.id);
        if (value === undefined) {
          if (m.required) {
            throw new KilnError(
              "E_SECRET_MISSING",
              `${v.name}: secret ${m.id} is required but was not provided`,
              {
                hint: `pass it with --secret id=${m.id},src=<file> or --secret id=${m.id},env=<VAR>`,
              },
            );
          }
          return {};
        }
        if (m.env) return { env: `${m.env}=${value.toString("utf8")}` };
        // secrets live on a tmpfs outside the rootfs and are bind-mounted read-only; the
        // owner tag lets the next build remove them if this process is killed
        const dir = join(
          SECRETS_DIR,
          `${SECRET_PREFIX}${await ownerTag()}-${randomBytes(8).toString("hex")}`,
        );
        await mkdir(dir, { mode: 0o700 });
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        const file = join(dir, "secret");
        await writeFile(file, value, { mode: m.mode });
        await chown(file, m.uid, m.gid);
        return {
          mount: {
            type: "bind",
            source: file,
            target: m.target ?? `/run/secrets/${m.id}`,
            readonly: true,
          },
        };
      }
      case "ssh": {
        const sock = this.o.ssh.get(m.id);
        if (!sock) {
          if (m.required) {
            throw new KilnError(
              "E_SSH_MISSING",
              `${v.name}: ssh agent ${m.id} is required but was not forwarded`,
              {
                hint: `pass --ssh ${m.id === "default" ? "default" : `${m.id}=<socket or key>`}`,
              },
            );
          }
          return {};
        }
        // SSH_AUTH_SOCK is in the step's env already (the frontend sets it, as LLB does)
        return { mount: { type: "bind", source: sock, target: m.target, readonly: false } };
      }
    }
  }

  private async file(
    v: Vertex,
    op: FileOp,
    inputs: FsResult[],
    ctx: RunContext,
  ): Promise<FsResult> {
    const base = op.dest >= 0 ? (inputs[op.dest] ?? { layers: [] }) : { layers: [] };
    const active = await this.o.state.snapshots.prepare(
      stepSnapshotId("active", ctx.cacheKey),
      base.layers.map((l) => l.snapshot),
    );
    const views: ActiveMount[] = [];
    let lead: ((layer: LayerRecord | undefined) => void) | undefined;
    try {
      const ownerOf = async (c: Chown | undefined): Promise<Owner | undefined> => {
        if (!c) return undefined;
        return resolveOwner(active.rootfs, c.group === undefined ? c.user : `${c.user}:${c.group}`);
      };
      const twin = await this.copyTwin(v, op, active.rootfs, ownerOf);
      if (twin) {
        const first = this.copyTwins.get(twin.key);
        if (first === undefined) {
          const layer = new Promise<LayerRecord | undefined>((resolve) => (lead = resolve));
          this.copyTwins.set(twin.key, { facts: twin.facts, layer });
        } else if (first.facts === twin.facts) {
          const layer = await first.layer;
          if (layer) return { layers: [...base.layers, { ...layer, producer: v.digest }] };
        }
      }
      for (const a of op.actions) {
        switch (a.action) {
          case "copy": {
            const source = await this.copySource(v, a.input, inputs, ctx, views);
            await copyInto(active.rootfs, source, {
              src: a.src,
              dest: a.dest,
              owner: await ownerOf(a.chown),
              mode: a.chmod ? parseChmod(a.chmod) : undefined,
              ...(a.linkedParents ? { defaultParentMode: true } : {}),
              dirContents: a.dirContents,
              allowWildcard: a.allowWildcard,
              allowEmptyWildcard: a.allowEmptyWildcard,
              excludes: a.excludes,
              parents: a.parents,
              unpack: a.unpack,
              followSymlinks: a.followSymlinks,
            });
            break;
          }
          case "mkdir":
            await mkdirIn(active.rootfs, a.path, {
              mode: a.mode,
              makeParents: a.makeParents,
              owner: await ownerOf(a.chown),
            });
            break;
          case "mkfile":
            await mkfileIn(active.rootfs, a.path, a.data, {
              mode: a.mode,
              owner: await ownerOf(a.chown),
            });
            break;
          case "rm":
            await rmIn(active.rootfs, a.path, a.allowNotFound, a.allowWildcard);
            break;
        }
      }
      const made = await this.commitLayer(v, active, base, ctx.cacheKey);
      lead?.(made.layers.at(-1));
      return made;
    } catch (e) {
      throw stepError(v, e);
    } finally {
      // a twin waiting for a layer that was not made copies for itself
      lead?.(undefined);
      for (const view of views) await view.release().catch(() => undefined);
      await active.release();
    }
  }

  /**
   * A COPY that another platform's identical COPY may make the layer of: the same op, the same
   * sources (the same context files, or the same step's result), and the same facts about its
   * destination in the filesystem it copies into (`copyDestinationFacts`, and the owner its
   * --chown names there). The first such COPY of a build copies; each twin waits for it and
   * stacks its layer on its own base: one copy, one snapshot and one blob instead of one per
   * platform. Only a layer that is a directory of its own (overlay) may sit on another base.
   */
  private async copyTwin(
    v: Vertex,
    op: FileOp,
    rootfs: string,
    ownerOf: (c: Chown | undefined) => Promise<Owner | undefined>,
  ): Promise<{ key: string; facts: string } | undefined> {
    if (!(await this.o.state.snapshots.layersApart())) return undefined;
    const sources: string[] = [];
    const facts: string[] = [];
    for (const a of op.actions) {
      if (a.action !== "copy" || a.input === op.dest) return undefined;
      const input = v.inputs[a.input]!;
      const local = this.localContext(input);
      sources.push(local ? await this.checksum(local, a.src) : input.digest);
      const dest = copyDestinationFacts(rootfs, a.dest);
      if (dest === undefined) return undefined;
      facts.push(dest, JSON.stringify((await ownerOf(a.chown)) ?? null));
    }
    return { key: sha256(canonicalJSON({ op, sources })), facts: facts.join("\n") };
  }

  /** A local build context as a copy source: what its ignore rules leave, owners as on disk. */
  private contextSource(input: Vertex | undefined, local: LocalContext): CopySource {
    return {
      root: local.dir,
      label:
        input?.op.kind === "local" && input.op.name !== "context"
          ? `build context ${input.op.name}`
          : "build context",
      excluded: (rel) => local.filter.excluded(rel),
      exclusionReason: (rel) => local.filter.reason(rel),
      reincludes: local.filter.patterns.some((p) => p.startsWith("!")),
    };
  }

  private async copySource(
    v: Vertex,
    index: number,
    inputs: FsResult[],
    ctx: RunContext,
    views: ActiveMount[],
  ): Promise<CopySource> {
    const input = v.inputs[index];
    const local = this.localContext(input);
    if (local) {
      return {
        ...this.contextSource(input, local),
        ownerOverride: { uid: 0, gid: 0 },
        rootStampedNow: true,
      };
    }
    const view = await this.view(inputs[index]?.layers ?? [], ctx.cacheKey);
    views.push(view);
    return { root: view.rootfs, label: input ? `"${input.name}"` : "source" };
  }
}
