/**
 * `ADD <http(s) URL>` with BuildKit's semantics. The file is downloaded into the content
 * store, and per URL a small record keeps the digest with the validators the server sent
 * (ETag, Last-Modified), so a rebuild revalidates with one conditional GET instead of a
 * download. The build cache is keyed on the content's digest, resolved while cache keys are
 * computed: a changed remote file re-runs the ADD and every step after it. With `--checksum`
 * the checksum is the key, and a cached build makes no request at all.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import type { ContentStore } from "../content/index.js";
import type { HttpSourceOp } from "../graph/index.js";
import { HttpTransport, drain, responseHeader } from "../registry/http.js";
import { VERSION } from "../version.js";

export interface HttpSourceOptions {
  /** where the per-URL records live (`<dir>/<sha256 of the URL>.json`) */
  recordsDir: string;
  content: ContentStore;
  /** build secrets; `HTTP_AUTH_HEADER_<host>` / `HTTP_AUTH_TOKEN_<host>` set Authorization */
  secrets: ReadonlyMap<string, Buffer>;
}

/** What we know about a URL from its last download. */
interface UrlRecord {
  url: string;
  digest: string;
  size: number;
  etag?: string;
  lastModified?: string;
}

/** The URL's current content: its digest and Last-Modified (HTTP date, the file's mtime). */
interface Resolved {
  digest: string;
  lastModified?: string;
}

/** BuildKit's default when the URL's path names no file. */
const UNNAMED = "__unnamed__";
/** The mode BuildKit gives a downloaded file (ADD --chmod changes it in the copy). */
const FILE_MODE = 0o600;

/** Go's path.Base: the last element, trailing slashes ignored; "." for "", "/" for slashes. */
function goBase(p: string): string {
  if (p === "") return ".";
  const trimmed = p.replace(/\/+$/, "");
  if (trimmed === "") return "/";
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** A name that is safe as one path element (BuildKit's pathutil.SafeFileName). */
export function safeFileName(name: string): string {
  const base = goBase(name.trim());
  // eslint-disable-next-line no-control-regex -- control characters are what is rejected
  if (base === "." || base === ".." || base === "/" || /[\u0000-\u001f\u007f-\u009f]/.test(base))
    return "download";
  return base;
}

/**
 * The name an ADD of this URL downloads to, as BuildKit's Dockerfile frontend derives it: the
 * last element of the URL's decoded path, `__unnamed__` when the path names none.
 */
export function urlFileName(url: string): string {
  let base = UNNAMED;
  try {
    const b = goBase(decodeURIComponent(new URL(url).pathname));
    if (b !== "." && b !== "/") base = b;
  } catch {
    // not a URL, or a malformed %-escape: Go's url.Parse fails the same way
  }
  return safeFileName(base);
}

/** An ETag compared as BuildKit does: a weak validator equals its strong form. */
function sameETag(a: string | null | undefined, b: string | undefined): boolean {
  return !!a && !!b && a.replace(/^W\//, "") === b.replace(/^W\//, "");
}

/** Last-Modified normalized to the HTTP date format; unparsable dates are ignored. */
function httpDate(v: string | null | undefined): string | undefined {
  if (!v) return undefined;
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? undefined : t.toUTCString();
}

export class HttpSource {
  /** one resolution per URL per build, shared by every vertex that adds it */
  private readonly resolving = new Map<string, Promise<Resolved>>();
  private transport: HttpTransport | undefined;

  constructor(private readonly o: HttpSourceOptions) {}

  /** The content identity of an http source for the build cache. */
  async cacheKey(op: HttpSourceOp, signal: AbortSignal): Promise<string> {
    if (op.checksum) return op.checksum;
    const r = await this.resolve(op.url, signal);
    // the mtime is part of the file the step produces, so it is part of the key (as BuildKit)
    return r.lastModified ? `${r.digest} ${r.lastModified}` : r.digest;
  }

  /** The digest of the content this build used for the URL (a provenance material). */
  async contentDigest(op: HttpSourceOp): Promise<string | undefined> {
    return op.checksum ?? (await this.readRecord(op.url))?.digest;
  }

  /**
   * Writes the URL's file into `dir` as BuildKit's http source does: named by the op's
   * filename, mode 0600, mtime from Last-Modified (else the epoch). Downloads only when the
   * content is not in the store already.
   */
  async writeFile(op: HttpSourceOp, dir: string, signal: AbortSignal): Promise<void> {
    let digest: string;
    let lastModified: string | undefined;
    if (op.checksum) {
      digest = op.checksum;
      const rec = await this.readRecord(op.url);
      if (rec?.digest === digest) lastModified = rec.lastModified;
    } else {
      ({ digest, lastModified } = await this.resolve(op.url, signal));
    }
    if (!(await this.o.content.has(digest))) {
      const res = await this.request(op.url, this.headers(op.url), signal);
      ({ lastModified } = await this.store(op, res, digest));
    }
    const file = join(dir, op.filename ?? urlFileName(op.url));
    await pipeline(
      this.o.content.openRead(digest),
      createWriteStream(file, { flags: "wx", mode: FILE_MODE }),
    );
    await chmod(file, FILE_MODE); // the umask must not narrow it
    const mtime = lastModified ? new Date(lastModified) : new Date(0);
    await utimes(file, mtime, mtime);
  }

  private resolve(url: string, signal: AbortSignal): Promise<Resolved> {
    let p = this.resolving.get(url);
    if (!p) {
      p = this.revalidate(url, signal);
      this.resolving.set(url, p);
    }
    return p;
  }

  /** A conditional GET with the stored validators; downloads only what changed. */
  private async revalidate(url: string, signal: AbortSignal): Promise<Resolved> {
    const rec = await this.readRecord(url);
    const headers = this.headers(url);
    if (rec?.etag) headers["if-none-match"] = rec.etag;
    else if (rec?.lastModified) headers["if-modified-since"] = rec.lastModified;
    const res = await this.request(url, headers, signal, rec !== undefined);
    if (rec && res.statusCode === 304) {
      await drain(res);
      return { digest: rec.digest, lastModified: rec.lastModified };
    }
    // some servers ignore If-None-Match but still send the same ETag (BuildKit's HEAD check)
    if (
      rec &&
      sameETag(responseHeader(res, "etag"), rec.etag) &&
      (await this.o.content.has(rec.digest))
    ) {
      res.destroy();
      return { digest: rec.digest, lastModified: rec.lastModified };
    }
    return this.store({ kind: "http", url }, res, undefined);
  }

  /** Streams the body into the content store, checks it, and records the URL's validators. */
  private async store(
    op: HttpSourceOp,
    res: IncomingMessage,
    expected: string | undefined,
  ): Promise<Resolved> {
    let info;
    try {
      info = await this.o.content.ingest(res);
    } catch (e) {
      throw new KilnError(
        isKilnError(e) ? e.code : "E_HTTP_FETCH",
        `cannot download ${op.url}: ${messageOf(e)}`,
        { hint: isKilnError(e) ? e.hint : undefined, cause: e },
      );
    }
    if (expected !== undefined && info.digest !== expected) {
      throw op.checksum
        ? new KilnError(
            "E_HTTP_CHECKSUM",
            `checksum mismatch for ${op.url}: expected ${expected}, got ${info.digest}`,
            {
              hint: "the server sent other content than --checksum pins: check the URL, or update --checksum if the change is intended",
            },
          )
        : new KilnError(
            "E_HTTP_CHANGED",
            `${op.url} changed during the build: expected ${expected}, got ${info.digest}`,
            { hint: "run the build again" },
          );
    }
    const rec: UrlRecord = { url: op.url, digest: info.digest, size: info.size };
    const etag = responseHeader(res, "etag");
    const lastModified = httpDate(responseHeader(res, "last-modified"));
    if (etag) rec.etag = etag;
    if (lastModified) rec.lastModified = lastModified;
    await this.writeRecord(rec);
    return { digest: info.digest, lastModified };
  }

  /** GET that fails with one clear line for an unreachable server or an error status. */
  private async request(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal,
    conditional = false,
  ): Promise<IncomingMessage> {
    let res: IncomingMessage;
    try {
      this.transport ??= new HttpTransport();
      res = await this.transport.follow(
        { method: "GET", url: new URL(url), headers, signal },
        true,
      );
    } catch (e) {
      if (signal.aborted) throw e;
      throw new KilnError("E_HTTP_FETCH", `cannot download ${url}: ${messageOf(e)}`, {
        hint: "check the URL and that its server is reachable from this machine",
        cause: e,
      });
    }
    const status = res.statusCode ?? 0;
    if ((status >= 200 && status < 300) || (conditional && status === 304)) return res;
    res.destroy();
    throw new KilnError(
      "E_HTTP_STATUS",
      `cannot download ${url}: HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""}`,
      {
        hint:
          status === 401 || status === 403
            ? "pass credentials with --secret id=HTTP_AUTH_TOKEN_<host> (or HTTP_AUTH_HEADER_<host>)"
            : "check the URL",
      },
    );
  }

  private headers(url: string): Record<string, string> {
    const headers: Record<string, string> = { "user-agent": `kiln/${VERSION}` };
    let host: string;
    try {
      host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
    } catch {
      return headers;
    }
    // BuildKit tries the header secret, then the token secret: a token wins when both exist
    const header = this.o.secrets.get(`HTTP_AUTH_HEADER_${host}`);
    const token = this.o.secrets.get(`HTTP_AUTH_TOKEN_${host}`);
    if (header) headers.authorization = header.toString("utf8");
    if (token) headers.authorization = `Bearer ${token.toString("utf8")}`;
    return headers;
  }

  private recordPath(url: string): string {
    return join(this.o.recordsDir, `${createHash("sha256").update(url).digest("hex")}.json`);
  }

  private async readRecord(url: string): Promise<UrlRecord | undefined> {
    try {
      const rec = JSON.parse(await readFile(this.recordPath(url), "utf8")) as UrlRecord;
      return rec.url === url && typeof rec.digest === "string" ? rec : undefined;
    } catch {
      return undefined; // none yet, or unreadable: download afresh
    }
  }

  /** Atomic (temp file + rename): a crash leaves the old record or the new one. */
  private async writeRecord(rec: UrlRecord): Promise<void> {
    await mkdir(this.o.recordsDir, { recursive: true });
    const path = this.recordPath(rec.url);
    const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(rec));
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
