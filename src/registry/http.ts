/**
 * The one place that talks HTTP (registries, ADD <url>, remote contexts): node:http/https with
 * keep-alive agents (so a CA file can be given and redirects stay under our control), streaming
 * request and response bodies.
 */
import { readFileSync } from "node:fs";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { finished, pipeline } from "node:stream/promises";
import { messageOf } from "../errors.js";

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** A Buffer (replayable) or a stream (sent once). */
  body?: Buffer | Readable;
  signal?: AbortSignal;
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

let extraCa: string | undefined | null = null;

/**
 * The PEM text of the file NODE_EXTRA_CA_CERTS names, read once; unreadable: a warning, as
 * Node gives. kiln's launcher (bin/kiln) hides the variable from Node's start-up, which would
 * otherwise parse the file and build its whole root store before any code runs (~35 ms here,
 * for every command, TLS or not); bin/entry.js puts it back, and it is applied here, when the
 * first HTTPS agent is made.
 */
function extraCaCertificates(): string | undefined {
  if (extraCa !== null) return extraCa;
  extraCa = undefined;
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (file) {
    try {
      extraCa = readFileSync(file, "utf8");
    } catch (e) {
      process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${messageOf(e)}`);
    }
  }
  return extraCa;
}

/** TLS contexts by the extra certificates they trust (a daemon makes a client per build). */
const secureContexts = new Map<string, SecureContext>();

/** The roots an HTTPS agent trusts: Node's, NODE_EXTRA_CA_CERTS's, the given CA's. */
function trustedRoots(ca: Buffer | undefined): SecureContext | undefined {
  const extra = [extraCaCertificates(), ca?.toString("utf8")].filter((c) => c !== undefined);
  if (extra.length === 0) return undefined;
  const key = extra.join("\n");
  let context = secureContexts.get(key);
  // Giving a CA replaces Node's default store, so its roots are listed too.
  if (context === undefined)
    secureContexts.set(
      key,
      (context = createSecureContext({ ca: [...rootCertificates, ...extra] })),
    );
  return context;
}

export class HttpTransport {
  private readonly httpAgent: http.Agent;
  /** made on first HTTPS use: trusting a CA costs parsing every root certificate */
  private secureAgent: https.Agent | undefined;
  private readonly idleTimeoutMs: number;
  private readonly maxSockets: number;
  private readonly ca: Buffer | undefined;

  constructor(opts: TransportOptions = {}) {
    this.maxSockets = opts.maxSockets ?? 16;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.ca = opts.ca;
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: this.maxSockets });
  }

  private httpsAgent(): https.Agent {
    if (this.secureAgent === undefined) {
      const secureContext = trustedRoots(this.ca);
      this.secureAgent = new https.Agent({
        keepAlive: true,
        maxSockets: this.maxSockets,
        ...(secureContext === undefined ? {} : { secureContext }),
      });
    }
    return this.secureAgent;
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
        agent: secure ? this.httpsAgent() : this.httpAgent,
        ...(req.signal === undefined ? {} : { signal: req.signal }),
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

  /**
   * request, following up to 5 redirects when asked (GET/HEAD of blobs may be redirected to
   * storage). A hop to another host or scheme drops Authorization: our credentials are not for it.
   */
  async follow(req: HttpRequest, redirects: boolean): Promise<IncomingMessage> {
    let current = req;
    for (let hop = 0; ; hop++) {
      const res = await this.request(current);
      const status = res.statusCode ?? 0;
      const loc = responseHeader(res, "location");
      if (
        !redirects ||
        hop >= 5 ||
        loc === undefined ||
        ![301, 302, 303, 307, 308].includes(status)
      )
        return res;
      await drain(res);
      const next = new URL(loc, current.url);
      const sameOrigin = next.host === current.url.host && next.protocol === current.url.protocol;
      const headers = Object.fromEntries(
        Object.entries(current.headers ?? {}).filter(
          ([k]) => sameOrigin || k.toLowerCase() !== "authorization",
        ),
      );
      current = { method: current.method, url: next, headers, signal: current.signal };
    }
  }

  close(): void {
    this.httpAgent.destroy();
    this.secureAgent?.destroy();
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

/** A response header's (first) value. */
export function responseHeader(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
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
