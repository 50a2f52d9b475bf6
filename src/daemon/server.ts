/**
 * kilnd: the embedded engine served over HTTP, on a unix socket or on TCP with mutual TLS.
 * Builds on one node run one at a time (they share one state directory, whose stale-state
 * cleanup assumes a single builder); waiting requests count towards the node's load.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, readFile, rm, chmod } from "node:fs/promises";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Server } from "node:net";
import { pipeline } from "node:stream/promises";
import { join } from "node:path";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { build } from "../engine/build.js";
import { newRef, recordBuild } from "../history/index.js";
import {
  imageContextRef,
  type BuildRequest,
  type BuildResult,
  type OutputSpec,
} from "../request/index.js";
import { checkGranted, type Entitlement } from "../entitlements/index.js";
import { applyLayer, dirToTar } from "../archive/index.js";
import { format } from "../platform/index.js";
import type { Platform } from "../platform/types.js";
import type { ProgressEvent, ProgressSink } from "../progress/index.js";
import { VERSION } from "../version.js";
import { isDigest } from "../oci/index.js";
import { OCI_LAYOUT_CONTEXT } from "../source/index.js";
import { probeOffer, type PlatformOffer } from "./info.js";
import {
  HEARTBEAT_MS,
  PROTOCOL_VERSION,
  TAR_CONTEXT,
  TAR_DOCKERFILE,
  TAR_NAMED,
  LineReader,
  RETURNED_OUTPUTS,
  type BuildHeader,
  type NodeInfo,
  type ServerLine,
} from "./protocol.js";

export type ListenAddress =
  { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** `unix:///run/kilnd.sock` or `tcp://0.0.0.0:1234` (also used by clients for endpoints). */
export function parseAddress(addr: string): ListenAddress {
  if (addr.startsWith("unix://")) {
    const path = addr.slice("unix://".length);
    if (path.startsWith("/")) return { kind: "unix", path };
  } else if (addr.startsWith("tcp://")) {
    const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(addr);
    if (m) return { kind: "tcp", host: m[1]!.replace(/^\[|\]$/g, ""), port: Number(m[2]) };
  }
  throw new KilnError("E_ADDRESS", `invalid address ${JSON.stringify(addr)}`, {
    hint: "use unix:///absolute/path.sock or tcp://HOST:PORT",
  });
}

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface DaemonOptions {
  /** the node's name, shown in every progress event it sends */
  name: string;
  root: string;
  /** platforms the operator says this node builds (routing prefers them) */
  platforms: Platform[];
  /** entitlements a client may ask for (`--allow-insecure-entitlement`); default none */
  entitlements?: Entitlement[];
  log: (line: string) => void;
}

const MAX_HEADER = 64 << 20;
/** where a request's file outputs are written, one directory per output index */
const OUT_DIR = "out";

export class KilnDaemon {
  readonly #opts: DaemonOptions;
  readonly #servers: Server[] = [];
  readonly #running = new Set<AbortController>();
  #queue: Promise<void> = Promise.resolve();
  #load = 0;
  #offer: Promise<PlatformOffer> | undefined;

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
  }

  /** Starts serving on `addr`; TCP needs `tls` unless `insecure`. Resolves once listening. */
  async listen(
    addr: ListenAddress,
    opts: { tls?: TlsFiles; insecure?: boolean } = {},
  ): Promise<string> {
    let server: Server;
    let secure: boolean;
    if (addr.kind === "unix") {
      server = createHttpServer((req, res) => {
        this.#handle(req, res, true);
      });
      secure = true;
      await removeStaleSocket(addr.path);
    } else if (opts.tls) {
      const [ca, cert, key] = await Promise.all(
        [opts.tls.ca, opts.tls.cert, opts.tls.key].map((f) => readTlsFile(f)),
      );
      server = createHttpsServer(
        { ca, cert, key, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
        (req, res) => {
          this.#handle(req, res, true);
        },
      );
      secure = true;
    } else if (opts.insecure) {
      server = createHttpServer((req, res) => {
        this.#handle(req, res, false);
      });
      secure = false;
    } else {
      throw new KilnError(
        "E_TLS_REQUIRED",
        `refusing to serve tcp://${addr.host}:${addr.port} without TLS`,
        {
          hint: "pass --tlscacert, --tlscert and --tlskey (mutual TLS), or --insecure to accept anyone on the network",
        },
      );
    }
    server.on("tlsClientError", (e: Error) => {
      this.#opts.log(`refused a TLS client: ${e.message}`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (addr.kind === "unix") server.listen(addr.path, resolve);
      else server.listen(addr.port, addr.host, resolve);
    });
    if (addr.kind === "unix") await chmod(addr.path, 0o660);
    this.#servers.push(server);
    const a = server.address();
    const where =
      addr.kind === "unix"
        ? `unix://${addr.path}`
        : `tcp://${addr.host}:${typeof a === "object" && a ? a.port : addr.port}`;
    this.#opts.log(
      `listening on ${where}${secure ? "" : " (INSECURE: plain TCP, no authentication)"}`,
    );
    return where;
  }

  async close(): Promise<void> {
    for (const c of this.#running) c.abort(new KilnError("E_CANCELED", "kilnd is shutting down"));
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise<void>((resolve) =>
            s.close(() => {
              resolve();
            }),
          ),
      ),
    );
  }

  async info(): Promise<NodeInfo> {
    // probed once: a node's CPU does not change, and probing takes seconds
    if (this.#offer === undefined) {
      const probe = probeOffer();
      this.#offer = probe;
      probe.catch(() => {
        if (this.#offer === probe) this.#offer = undefined;
      });
    }
    const offer = await this.#offer;
    return {
      name: this.#opts.name,
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      configured: this.#opts.platforms.map(format),
      native: offer.native.map(format),
      emulated: offer.emulated.map(format),
      load: this.#load,
    };
  }

  #handle(req: IncomingMessage, res: ServerResponse, secure: boolean): void {
    const route = `${req.method ?? ""} ${(req.url ?? "").split("?")[0]}`;
    const fail = (status: number, e: unknown): void => {
      if (res.headersSent) return void res.end();
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(errorLine(this.#opts.name, e)));
    };
    if (route === "GET /info") {
      this.info().then(
        (info) => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify(info));
        },
        (e: unknown) => {
          fail(500, e);
        },
      );
      return;
    }
    if (route === "POST /build") {
      void this.#build(req, res, secure);
      return;
    }
    req.resume();
    fail(404, new KilnError("E_NOT_FOUND", `kilnd has no ${route}`));
  }

  async #build(req: IncomingMessage, res: ServerResponse, secure: boolean): Promise<void> {
    const node = this.#opts.name;
    const id = randomBytes(6).toString("hex");
    const dir = join(this.#opts.root, "requests", id);
    const abort = new AbortController();
    this.#running.add(abort);
    this.#load++;
    res.on("close", () => {
      if (!res.writableFinished)
        abort.abort(new KilnError("E_CANCELED", "build canceled: the client went away"));
    });
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    // once the result line is out, the rest of the answer is the files' tar: no more lines
    let answered = false;
    const send = (line: ServerLine): void => {
      if (answered || res.writableEnded || res.destroyed) return;
      res.write(`${JSON.stringify(line)}\n`);
      if (line.type === "result") answered = true;
    };
    const heartbeat = setInterval(() => {
      send({ type: "heartbeat", node });
    }, HEARTBEAT_MS);
    const sink: ProgressSink = {
      write: (ev: ProgressEvent) => {
        send({ ...ev, node });
      },
      close: () => Promise.resolve(),
    };
    const peer = req.socket.remoteAddress ?? "local socket";
    try {
      const body = new LineReader(req);
      const line = await body.nextLine(MAX_HEADER).catch((e: unknown) => {
        throw new KilnError("E_PROTOCOL", `bad build request: ${messageOf(e)}`);
      });
      const header = parseHeader(line ?? "");
      checkGranted(header.request.allow ?? [], this.#opts.entitlements ?? []);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await applyLayer(body.rest(), dir, { whiteouts: "delete" });
      const request = toRequest(header, dir);
      if (!secure && Object.keys(header.secrets).length > 0) {
        // A client must never send these over plain TCP; if one did, they are not used.
        sink.write({
          type: "warning",
          message: `secrets ${Object.keys(header.secrets).join(", ")} arrived over plain TCP and were dropped`,
        });
        request.secrets = {};
      }
      const platforms = request.platforms.map(format).join(",") || "default";
      this.#opts.log(`build ${id} from ${peer}: platforms ${platforms}, waiting`);
      const result = await this.#exclusive(async (): Promise<BuildResult> => {
        abort.signal.throwIfAborted();
        this.#opts.log(`build ${id}: started`);
        const root = this.#opts.root;
        // the node keeps its own record of its part of the build
        const recorded = { root, ref: newRef(), request, progress: sink, node };
        return recordBuild(recorded, (progress) =>
          build(request, { root, progress, signal: abort.signal }),
        );
      });
      this.#opts.log(`build ${id}: done ${result.digest}`);
      const files = request.outputs.some((o) => RETURNED_OUTPUTS.has(o.type));
      send({ type: "result", node, result, files });
      if (files) await pipeline(dirToTar(join(dir, OUT_DIR)), res);
    } catch (e) {
      this.#opts.log(`build ${id}: failed: ${messageOf(e)}`);
      send(errorLine(node, e));
    } finally {
      clearInterval(heartbeat);
      this.#load--;
      this.#running.delete(abort);
      if (!res.writableEnded) res.end();
      await rm(dir, { recursive: true, force: true });
    }
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

function errorLine(node: string, e: unknown): Extract<ServerLine, { type: "error" }> {
  if (isKilnError(e)) {
    return { type: "error", node, code: e.code, message: e.message, hint: e.hint };
  }
  return { type: "error", node, code: "E_NODE_INTERNAL", message: messageOf(e) };
}

function parseHeader(line: string): BuildHeader {
  let h: BuildHeader;
  try {
    h = JSON.parse(line) as BuildHeader;
  } catch (e) {
    throw new KilnError("E_PROTOCOL", `bad build request header: ${messageOf(e)}`);
  }
  if (h.protocol !== PROTOCOL_VERSION) {
    throw new KilnError(
      "E_PROTOCOL",
      `client speaks protocol ${String(h.protocol)}, this kilnd speaks ${PROTOCOL_VERSION}`,
      { hint: "run the same kiln version on the client and the nodes" },
    );
  }
  return h;
}

const safeName = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The engine request for an unpacked upload; outputs that would write on the node are refused. */
function toRequest(h: BuildHeader, dir: string): BuildRequest {
  if (!safeName.test(h.dockerfile)) throw new KilnError("E_PROTOCOL", "bad Dockerfile name");
  // File outputs go to the request's own directory and are streamed back; the node never
  // writes where a client says.
  const outputs = h.request.outputs.map((o, i): OutputSpec => {
    if (o.type === "image") return o;
    const dest = join(dir, OUT_DIR, String(i));
    if (o.type === "oci") return { ...o, dest, tar: false };
    if (o.type === "local") return { ...o, dest };
    throw new KilnError("E_REMOTE_OUTPUT", `a node cannot return type=${o.type} outputs`, {
      hint: "use type=oci or type=local with a remote builder",
    });
  });
  // a local cache is a directory of the client's; the node never reads or writes one
  if (
    [...(h.request.cacheFrom ?? []), ...(h.request.cacheTo ?? [])].some((c) => c.type === "local")
  ) {
    throw new KilnError("E_REMOTE_CACHE", "a node cannot use type=local caches", {
      hint: "use a registry cache with a remote builder",
    });
  }
  const namedContexts: Record<string, string> = {};
  for (const n of h.namedContexts) {
    if (!safeName.test(n))
      throw new KilnError("E_PROTOCOL", `bad named context ${JSON.stringify(n)}`);
    namedContexts[n] = join(dir, TAR_NAMED, n);
  }
  for (const [n, digest] of Object.entries(h.ociLayouts ?? {})) {
    if (namedContexts[n] === undefined || !isDigest(digest))
      throw new KilnError("E_PROTOCOL", `bad oci-layout context ${JSON.stringify(n)}`);
    namedContexts[n] = `${OCI_LAYOUT_CONTEXT}${namedContexts[n]}@${digest}`;
  }
  for (const [n, ref] of Object.entries(h.imageContexts ?? {})) {
    if (!safeName.test(n) || imageContextRef(ref) === undefined || n in namedContexts)
      throw new KilnError("E_PROTOCOL", `bad image context ${JSON.stringify(n)}`);
    namedContexts[n] = ref;
  }
  return {
    ...h.request,
    outputs,
    contextDir: join(dir, TAR_CONTEXT),
    dockerfile: join(dir, TAR_DOCKERFILE, h.dockerfile),
    namedContexts,
    secrets: Object.fromEntries(
      Object.entries(h.secrets).map(([k, v]) => [k, Buffer.from(v, "base64")]),
    ),
    // agent sockets live on the client; forwarding them is not supported
    ssh: {},
  };
}

async function readTlsFile(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    throw new KilnError("E_TLS_FILE", `cannot read ${file}: ${messageOf(e)}`, {
      hint: "pass readable PEM files to --tlscacert, --tlscert and --tlskey",
    });
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (!st.isSocket()) {
    throw new KilnError("E_ADDRESS", `${path} exists and is not a socket`, {
      hint: "choose another path for --addr unix://…",
    });
  }
  await rm(path);
}
