/**
 * The one place that talks HTTP: node:http/https with keep-alive agents (so a CA file can be
 * given and redirects stay under our control), streaming request and response bodies.
 */
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import { finished, pipeline } from "node:stream/promises";

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** A Buffer (replayable) or a stream (sent once). */
  body?: Buffer | Readable;
}

export interface TransportOptions {
  /** Extra CA certificates (PEM) trusted for HTTPS, in addition to the system's. */
  ca?: Buffer;
  /** Idle socket timeout; a stalled transfer fails with ETIMEDOUT after this long. */
  idleTimeoutMs?: number;
  maxSockets?: number;
}

/** Network error codes worth retrying: the request may succeed on a fresh connection. */
const transientCodes = new Set([
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ECONNABORTED",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
]);

export function isTransientNetworkError(e: unknown): boolean {
  return transientCodes.has((e as NodeJS.ErrnoException | undefined)?.code ?? "");
}

export class HttpTransport {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly idleTimeoutMs: number;

  constructor(opts: TransportOptions = {}) {
    const maxSockets = opts.maxSockets ?? 16;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets,
      // Adding a CA must not drop the system roots.
      ...(opts.ca === undefined ? {} : { ca: [...rootCertificates, opts.ca.toString("utf8")] }),
    });
  }

  /** Resolves with the response head; the body is left for the caller to consume or drain. */
  request(req: HttpRequest): Promise<IncomingMessage> {
    const secure = req.url.protocol === "https:";
    const mod = secure ? https : http;
    const headers: Record<string, string> = { "User-Agent": "kiln", ...req.headers };
    if (Buffer.isBuffer(req.body)) headers["Content-Length"] = String(req.body.byteLength);
    return new Promise((resolve, reject) => {
      const r = mod.request(req.url, {
        method: req.method,
        headers,
        agent: secure ? this.httpsAgent : this.httpAgent,
      });
      r.setTimeout(this.idleTimeoutMs, () => {
        r.destroy(
          Object.assign(new Error(`no data for ${this.idleTimeoutMs} ms`), { code: "ETIMEDOUT" }),
        );
      });
      r.on("error", reject);
      r.on("response", (res) => {
        // A response may come before the upload finished (an early 401 or 4xx): stop sending.
        resolve(res);
      });
      if (req.body === undefined) r.end();
      else if (Buffer.isBuffer(req.body)) r.end(req.body);
      else {
        pipeline(req.body, r).catch((e: unknown) => {
          r.destroy(e as Error);
        });
      }
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** Read a whole (small) body, failing once it exceeds `limit` bytes. */
export async function readBody(res: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of res) {
    const b = chunk as Buffer;
    total += b.byteLength;
    if (total > limit) {
      res.destroy();
      throw new RangeError(`response body larger than ${limit} bytes`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Discard a body we do not need so the connection can be reused. */
export async function drain(res: IncomingMessage): Promise<void> {
  res.resume();
  try {
    await finished(res);
  } catch {
    // A broken body we meant to ignore anyway.
  }
}
