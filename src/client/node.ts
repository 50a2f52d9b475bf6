/** One kilnd node as the client sees it: its info, and builds streamed to it. */
import { readFileSync } from "node:fs";
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import type { BuildResult } from "../request/index.js";
import {
  HEARTBEAT_MS,
  PROTOCOL_VERSION,
  parseAddress,
  LineReader,
  type BuildHeader,
  type ListenAddress,
  type NodeInfo,
  type ServerLine,
} from "../daemon/index.js";
import type { BuilderNode } from "./config.js";

/** Codes meaning "the node, not the build, failed": its platforms may go elsewhere. */
export const NODE_FAULTS: ReadonlySet<string> = new Set(["E_NODE_UNREACHABLE", "E_NODE_LOST"]);

export type ProgressLine = Exclude<ServerLine, { type: "result" | "error" | "heartbeat" }>;

export class NodeClient {
  readonly name: string;
  readonly endpoint: string;
  readonly #addr: ListenAddress;
  readonly #tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;

  constructor(node: BuilderNode) {
    this.name = node.name;
    this.endpoint = node.endpoint;
    this.#addr = parseAddress(node.endpoint);
    if (node.tls && this.#addr.kind === "tcp") {
      const read = (f: string): Buffer => {
        try {
          return readFileSync(f);
        } catch (e) {
          throw new KilnError(
            "E_TLS_FILE",
            `node ${node.name}: cannot read ${f}: ${messageOf(e)}`,
            {
              hint: "recreate the node with readable --tlscacert/--tlscert/--tlskey files",
            },
          );
        }
      };
      this.#tls = { ca: read(node.tls.ca), cert: read(node.tls.cert), key: read(node.tls.key) };
    }
  }

  /** Unix socket or mutual TLS: the only transports that may carry secrets. */
  get secure(): boolean {
    return this.#addr.kind === "unix" || this.#tls !== undefined;
  }

  async info(timeoutMs = 5_000): Promise<NodeInfo> {
    const req = this.#request("GET", "/info");
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.end();
    try {
      const res = await responseOf(req);
      const text = await readAll(res);
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode ?? "?"}: ${text}`);
      const info = JSON.parse(text) as NodeInfo;
      if (info.protocol !== PROTOCOL_VERSION) {
        throw new KilnError(
          "E_PROTOCOL",
          `node ${this.name} speaks protocol ${info.protocol}, this kiln speaks ${PROTOCOL_VERSION}`,
          { hint: "run the same kiln version on the client and the nodes" },
        );
      }
      return info;
    } catch (e) {
      if (isKilnError(e)) throw e;
      throw new KilnError(
        "E_NODE_UNREACHABLE",
        `node ${this.name} (${this.endpoint}): ${messageOf(e)}`,
        {
          hint: "start kilnd there, or check the address and the TLS files of the node",
          cause: e,
        },
      );
    }
  }

  /**
   * Streams a build to the node: the header line, then the context tar. Progress lines go to
   * `onProgress`; resolves with the node's result. A node that cannot be reached, or goes away
   * before answering, fails with a code in NODE_FAULTS.
   */
  async build(
    header: BuildHeader,
    body: Readable,
    onProgress: (line: ProgressLine) => void,
    opts: {
      signal?: AbortSignal;
      /** receives the tar of file outputs that follows the result; must consume it */
      onFiles?: (tar: AsyncIterable<Buffer>) => Promise<void>;
    } = {},
  ): Promise<BuildResult> {
    const { signal } = opts;
    if (!this.secure && Object.keys(header.secrets).length > 0) {
      body.destroy();
      throw new KilnError(
        "E_SECRET_INSECURE",
        `node ${this.name} is reached over plain TCP; secrets are never sent that way`,
        {
          hint: "give the node mutual TLS (kilnd --tlscacert/--tlscert/--tlskey and kiln builder create --tls…) or use a unix socket",
        },
      );
    }
    signal?.throwIfAborted();
    const req = this.#request("POST", "/build", { "content-type": "application/x-kiln-build" });
    let connected = false;
    req.once("socket", (s) =>
      s.once(this.#tls ? "secureConnect" : "connect", () => (connected = true)),
    );
    // Heartbeats arrive every HEARTBEAT_MS; several missing means the node is gone.
    req.setTimeout(HEARTBEAT_MS * 6, () =>
      req.destroy(new Error(`no word from the node for ${(HEARTBEAT_MS * 6) / 1000} s`)),
    );
    const onAbort = (): void => {
      req.destroy(signal?.reason as Error);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const upload = pipeline(
      Readable.from(
        (async function* () {
          yield Buffer.from(`${JSON.stringify(header)}\n`);
          for await (const chunk of body) yield chunk as Buffer;
        })(),
      ),
      req,
    );
    const answer = responseOf(req).then((res) => this.#consume(res, onProgress, opts.onFiles));
    try {
      const [, result] = await Promise.all([upload, answer]);
      return result;
    } catch (e) {
      body.destroy();
      if (signal?.aborted) throw signal.reason;
      if (isKilnError(e)) throw e;
      const code = connected ? "E_NODE_LOST" : "E_NODE_UNREACHABLE";
      throw new KilnError(code, `node ${this.name} (${this.endpoint}): ${messageOf(e)}`, {
        cause: e,
      });
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async #consume(
    res: IncomingMessage,
    onProgress: (line: ProgressLine) => void,
    onFiles: ((tar: AsyncIterable<Buffer>) => Promise<void>) | undefined,
  ): Promise<BuildResult> {
    if (res.statusCode !== 200)
      throw nodeError(this.name, JSON.parse(await readAll(res)) as ServerLine);
    const reader = new LineReader(res);
    for (let text = await reader.nextLine(); text !== undefined; text = await reader.nextLine()) {
      const line = JSON.parse(text) as ServerLine;
      if (line.type === "heartbeat") continue;
      if (line.type === "error") throw nodeError(this.name, line);
      if (line.type !== "result") {
        onProgress(line);
        continue;
      }
      if (line.files) {
        if (!onFiles) throw new KilnError("E_PROTOCOL", `node ${this.name} sent unexpected files`);
        await onFiles(reader.rest());
      }
      return line.result;
    }
    throw new Error("the node went away before the build finished");
  }

  #request(method: string, path: string, headers: Record<string, string> = {}): ClientRequest {
    const a = this.#addr;
    if (a.kind === "unix") return httpRequest({ socketPath: a.path, method, path, headers });
    if (this.#tls) {
      return httpsRequest({
        host: a.host,
        port: a.port,
        method,
        path,
        headers,
        ...this.#tls,
        agent: false,
        minVersion: "TLSv1.2",
      });
    }
    return httpRequest({ host: a.host, port: a.port, method, path, headers, agent: false });
  }
}

function nodeError(node: string, line: ServerLine): KilnError {
  if (line.type !== "error") return new KilnError("E_PROTOCOL", `node ${node}: unexpected answer`);
  return new KilnError(line.code, `node ${node}: ${line.message}`, { hint: line.hint });
}

function responseOf(req: ClientRequest): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once("response", resolve);
    req.once("error", reject);
  });
}

async function readAll(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of res) parts.push(c as Buffer);
  return Buffer.concat(parts).toString("utf8");
}
