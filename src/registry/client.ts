/**
 * A distribution-spec (OCI) registry client: manifests, blobs, uploads, mounts, with auth,
 * retries and verification of every byte received against its digest.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { KilnError, messageOf } from "../errors.js";
import { digestOf, isDigest } from "../oci/encode.js";
import { manifestAcceptTypes } from "../oci/mediatypes.js";
import { parseManifestOrIndex, type ParsedDocument } from "../oci/parse.js";
import type { Descriptor, Digest } from "../oci/types.js";
import { Authorizer, repositoryScope } from "./auth.js";
import { dockerCredentials, type CredentialsProvider } from "./credentials.js";
import {
  HttpTransport,
  drain,
  isTransientNetworkError,
  readBody,
  responseHeader as header,
} from "./http.js";

/** A repository on a registry: `registry` as written in references ("docker.io", "host:5000"). */
export interface RepositoryRef {
  registry: string;
  repository: string;
}

export interface RetryPolicy {
  /** Total tries of one request (or one upload), including the first. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** No new attempt starts after this much time since the first. */
  maxElapsedMs: number;
}

export interface TransferProgress {
  direction: "pull" | "push";
  digest: Digest;
  done: number;
  total: number;
  /** "exists"/"mounted": nothing had to move; "done": the transfer finished. */
  status: "running" | "exists" | "mounted" | "done";
}

export interface RegistryClientOptions {
  /** Registries (host or host:port) reached over plain HTTP. Loopback always is. */
  insecureHosts?: string[];
  /** Credentials; default: Docker's config.json and credential helpers. */
  auth?: CredentialsProvider;
  /** Parallel blob transfers in pull/push (default 4). */
  maxConcurrency?: number;
  onProgress?: (p: TransferProgress) => void;
  /** A PEM file of extra CAs trusted for HTTPS registries. */
  caFile?: string;
  retry?: Partial<RetryPolicy>;
  /** Blobs larger than this are uploaded in chunks (default 32 MiB). */
  chunkThreshold?: number;
  /** Size of each uploaded chunk (default 16 MiB); a registry's OCI-Chunk-Min-Length wins if larger. */
  chunkSize?: number;
  /** What earlier pushes left in which repository: a push skips asking for those blobs. */
  pushedBlobs?: PushedBlobs;
}

/**
 * A record of the blobs this machine pushed to, found in or pulled from a repository. A blob
 * it lists is not asked for again (a no-op rebuild's push is then one request per manifest);
 * should the registry have lost one since, it refuses the manifest that needs it, pushImage
 * forgets the repository's record and pushes again, asking for every blob. A blob pushed to
 * another repository of the same registry is mounted from one that the record lists (a base
 * image's layers from the base's repository, as containerd's distribution-source labels do)
 * instead of uploaded; a registry that cannot mount it opens an upload instead.
 */
export interface PushedBlobs {
  hasPushedBlob(registry: string, repository: string, digest: Digest): boolean;
  addPushedBlob(registry: string, repository: string, digest: Digest): void;
  /** Repositories of `registry` on record with `digest`, the most recent first. */
  repositoriesWith(registry: string, digest: Digest, limit: number): string[];
  forgetPushedBlobs(registry: string, repository: string): void;
}

/** How many repositories on record a push asks to mount a blob from before uploading it. */
const MOUNT_CANDIDATES = 3;

export interface FetchedManifest {
  descriptor: Descriptor;
  bytes: Buffer;
  document: ParsedDocument;
}

export type PushResult = "exists" | "mounted" | "uploaded";

const maxManifestBytes = 4 << 20;
const defaultRetry: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 5_000,
  maxElapsedMs: 60_000,
};
const retryableStatus = new Set([408, 429, 500, 502, 503, 504]);
const loopback = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1)(?::\d+)?$/;

interface SendOptions {
  method: string;
  /** A path on the registry, or an absolute URL (upload locations). */
  url: string | URL;
  scopes: readonly string[];
  headers?: Record<string, string>;
  /**
   * Buffers are replayed on retry; a stream factory is called once per attempt; a stream is
   * sent once (a request that would need it again fails instead).
   */
  body?: Buffer | (() => Readable) | Readable;
  /** Safe to send again after a network error or a 5xx (not a PATCH of a chunk). */
  idempotent: boolean;
  /** Follow 3xx (GET/HEAD of blobs may be redirected to storage). */
  redirects?: boolean;
  /** What the request is about, for messages: `registry/repo:tag`. */
  subject: string;
}

export class RegistryClient {
  readonly maxConcurrency: number;
  /**
   * Parallel requests whose bodies are small (manifests, provenance statements): each costs a
   * round trip and the registry's bookkeeping, not bandwidth, so twice the blob transfers.
   */
  readonly smallConcurrency: number;
  private readonly transport: HttpTransport;
  private readonly auth: Authorizer;
  private readonly insecure: ReadonlySet<string>;
  private readonly retry: RetryPolicy;
  private readonly chunkThreshold: number;
  private readonly chunkSize: number;
  private readonly onProgress: ((p: TransferProgress) => void) | undefined;
  private readonly pushedBlobs: PushedBlobs | undefined;

  constructor(opts: RegistryClientOptions = {}) {
    this.pushedBlobs = opts.pushedBlobs;
    this.maxConcurrency = Math.max(1, opts.maxConcurrency ?? 4);
    this.smallConcurrency = this.maxConcurrency * 2;
    let ca: Buffer | undefined;
    if (opts.caFile !== undefined) {
      try {
        ca = readFileSync(opts.caFile);
      } catch (e) {
        throw new KilnError(
          "E_REGISTRY_CA",
          `cannot read CA file ${opts.caFile}: ${messageOf(e)}`,
          {
            hint: "pass a readable PEM file",
          },
        );
      }
    }
    this.transport = new HttpTransport({ ca, maxSockets: this.smallConcurrency + 2 });
    this.auth = new Authorizer(this.transport, opts.auth ?? dockerCredentials());
    this.insecure = new Set(opts.insecureHosts ?? []);
    this.retry = { ...defaultRetry, ...opts.retry };
    this.chunkThreshold = opts.chunkThreshold ?? 32 << 20;
    this.chunkSize = opts.chunkSize ?? 16 << 20;
    this.onProgress = opts.onProgress;
  }

  /** Token requests made so far (diagnostics; tests assert token caching with it). */
  get tokenRequests(): number {
    return this.auth.tokenRequests;
  }

  /** Release pooled connections. */
  close(): void {
    this.transport.close();
  }

  /**
   * Resolve a tag or digest to the descriptor of its manifest or index (HEAD, else GET).
   * `forPush`: ask with the push scope, so a push that starts with this look-up needs one token.
   */
  async resolve(
    repo: RepositoryRef,
    reference: string,
    opts: { forPush?: boolean } = {},
  ): Promise<Descriptor> {
    const subject = formatRef(repo, reference);
    const res = await this.send(repo, {
      method: "HEAD",
      url: manifestPath(repo, reference),
      scopes: [repositoryScope(repo.repository, opts.forPush ? "pull,push" : "pull")],
      headers: { Accept: manifestAcceptTypes.join(", ") },
      idempotent: true,
      subject,
    });
    await drain(res);
    const digest = header(res, "docker-content-digest");
    const mediaType = header(res, "content-type")?.split(";")[0]?.trim();
    const size = Number(header(res, "content-length"));
    if (
      res.statusCode === 200 &&
      digest !== undefined &&
      isDigest(digest) &&
      mediaType &&
      Number.isSafeInteger(size)
    ) {
      if (isDigest(reference) && digest !== reference)
        throw digestMismatch(subject, reference, digest);
      return { mediaType, digest, size };
    }
    if (res.statusCode !== 200 && res.statusCode !== 405)
      throw await statusError(res, subject, "manifest");
    // Some registries omit the digest on HEAD: fetch the document and hash it ourselves.
    return (await this.getManifest(repo, reference)).descriptor;
  }

  /** Fetch, verify and validate a manifest or index. */
  async getManifest(repo: RepositoryRef, reference: string): Promise<FetchedManifest> {
    const subject = formatRef(repo, reference);
    const res = await this.send(repo, {
      method: "GET",
      url: manifestPath(repo, reference),
      scopes: [repositoryScope(repo.repository, "pull")],
      headers: { Accept: manifestAcceptTypes.join(", ") },
      idempotent: true,
      subject,
    });
    if (res.statusCode !== 200) throw await statusError(res, subject, "manifest");
    let bytes: Buffer;
    try {
      bytes = await readBody(res, maxManifestBytes);
    } catch (e) {
      if (e instanceof RangeError) {
        throw new KilnError(
          "E_MANIFEST_INVALID",
          `manifest ${subject} is larger than ${maxManifestBytes} bytes`,
          {
            hint: "this is not an image manifest kiln can use",
          },
        );
      }
      throw unreachable(repo, subject, e);
    }
    const digest = digestOf(bytes);
    if (isDigest(reference) && reference !== digest)
      throw digestMismatch(subject, reference, digest);
    const claimed = header(res, "docker-content-digest");
    if (claimed !== undefined && claimed.startsWith("sha256:") && claimed !== digest) {
      throw digestMismatch(subject, claimed, digest);
    }
    const contentType = header(res, "content-type")?.split(";")[0]?.trim();
    const document = parseManifestOrIndex(bytes, contentType, subject);
    return {
      descriptor: { mediaType: document.mediaType, digest, size: bytes.byteLength },
      bytes,
      document,
    };
  }

  /** Upload a manifest or index under a tag or its digest; returns its descriptor. */
  async putManifest(
    repo: RepositoryRef,
    reference: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<Descriptor> {
    const subject = formatRef(repo, reference);
    const digest = digestOf(bytes);
    if (isDigest(reference) && reference !== digest)
      throw digestMismatch(subject, reference, digest);
    const res = await this.send(repo, {
      method: "PUT",
      url: manifestPath(repo, reference),
      scopes: [repositoryScope(repo.repository, "pull,push")],
      headers: { "Content-Type": mediaType },
      body: bytes,
      idempotent: true,
      subject,
    });
    if (res.statusCode !== 201 && res.statusCode !== 200) {
      const e = await statusError(res, subject, "manifest");
      if (!/BLOB_UNKNOWN/.test(e.message)) throw e;
      this.pushedBlobs?.forgetPushedBlobs(repo.registry, repo.repository);
      throw new KilnError(
        "E_MANIFEST_BLOB_UNKNOWN",
        `${subject}: the registry lacks a blob the manifest refers to: ${e.message}`,
        { hint: "push the image again (kiln pushes its blobs first)", cause: e },
      );
    }
    await drain(res);
    const stored = header(res, "docker-content-digest");
    if (stored !== undefined && stored.startsWith("sha256:") && stored !== digest) {
      throw digestMismatch(subject, digest, stored);
    }
    return { mediaType, digest, size: bytes.byteLength };
  }

  /** The size of a blob if the repository has it, else undefined. */
  async blobExists(
    repo: RepositoryRef,
    digest: Digest,
    scopes?: readonly string[],
  ): Promise<number | undefined> {
    const subject = formatRef(repo, digest);
    const res = await this.send(repo, {
      method: "HEAD",
      url: blobPath(repo, digest),
      scopes: scopes ?? [repositoryScope(repo.repository, "pull")],
      idempotent: true,
      redirects: true,
      subject,
    });
    await drain(res);
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw await statusError(res, subject, "blob");
    const size = Number(header(res, "content-length"));
    return Number.isSafeInteger(size) ? size : 0;
  }

  /**
   * Stream a blob, verified: the stream fails with E_DIGEST_MISMATCH at its end if the bytes do
   * not match `desc`. A dropped connection resumes with a Range request where it stopped.
   */
  fetchBlob(repo: RepositoryRef, desc: Descriptor): Readable {
    return Readable.from(this.blobChunks(repo, desc), { objectMode: false });
  }

  private async *blobChunks(repo: RepositoryRef, desc: Descriptor): AsyncGenerator<Buffer> {
    const subject = formatRef(repo, desc.digest);
    const hash = createHash("sha256");
    let received = 0;
    let resumes = 0;
    const started = Date.now();
    for (;;) {
      const res = await this.send(repo, {
        method: "GET",
        url: blobPath(repo, desc.digest),
        scopes: [repositoryScope(repo.repository, "pull")],
        headers: received > 0 ? { Range: `bytes=${received}-` } : {},
        idempotent: true,
        redirects: true,
        subject,
      });
      let skip = 0;
      if (res.statusCode === 206 && received > 0) {
        const start = /^bytes (\d+)-/.exec(header(res, "content-range") ?? "")?.[1];
        if (Number(start) !== received) {
          res.destroy();
          throw new KilnError(
            "E_REGISTRY",
            `registry answered a resumed download of ${subject} with the wrong range`,
            {
              hint: "retry the command",
            },
          );
        }
      } else if (res.statusCode === 200) {
        skip = received; // the server ignored Range: drop what we already have
      } else {
        throw await statusError(res, subject, "blob");
      }
      try {
        for await (const chunk of res) {
          let b = chunk as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, b.byteLength);
            skip -= n;
            b = b.subarray(n);
            if (b.byteLength === 0) continue;
          }
          received += b.byteLength;
          if (received > desc.size) {
            res.destroy();
            throw digestMismatch(subject, desc.digest, `more than ${desc.size} bytes`);
          }
          hash.update(b);
          this.progress({
            direction: "pull",
            digest: desc.digest,
            done: received,
            total: desc.size,
            status: "running",
          });
          yield b;
        }
        if (received < desc.size && res.complete) {
          throw digestMismatch(subject, desc.digest, `only ${received} of ${desc.size} bytes`);
        }
        if (received < desc.size)
          throw Object.assign(new Error("connection closed early"), { code: "ECONNRESET" });
        break;
      } catch (e) {
        if (!isTransientNetworkError(e) || !this.mayRetry(resumes + 1, started)) {
          throw e instanceof KilnError ? e : unreachable(repo, subject, e);
        }
        await sleep(this.backoff(resumes++));
      }
    }
    const actual = `sha256:${hash.digest("hex")}`;
    if (actual !== desc.digest) throw digestMismatch(subject, desc.digest, actual);
    // a push to another repository of this registry can mount it from here
    this.pushedBlobs?.addPushedBlob(repo.registry, repo.repository, desc.digest);
    this.progress({
      direction: "pull",
      digest: desc.digest,
      done: received,
      total: desc.size,
      status: "done",
    });
  }

  /**
   * Make a blob exist in `repo`: already there, mounted from one of `mountFrom` (repositories on
   * the same registry), or uploaded from `open()` (called again if an upload must restart).
   */
  async pushBlob(
    repo: RepositoryRef,
    desc: Descriptor,
    open: () => Readable,
    opts: {
      mountFrom?: readonly string[];
      /** a blob made just now (a build's provenance): sent without asking whether it is there */
      fresh?: boolean;
    } = {},
  ): Promise<PushResult> {
    const subject = formatRef(repo, desc.digest);
    const push = repositoryScope(repo.repository, "pull,push");
    const result = await this.#pushBlob(repo, desc, open, opts, subject, push);
    this.pushedBlobs?.addPushedBlob(repo.registry, repo.repository, desc.digest);
    return result;
  }

  async #pushBlob(
    repo: RepositoryRef,
    desc: Descriptor,
    open: () => Readable,
    opts: { mountFrom?: readonly string[]; fresh?: boolean },
    subject: string,
    push: string,
  ): Promise<PushResult> {
    if (
      this.pushedBlobs?.hasPushedBlob(repo.registry, repo.repository, desc.digest) === true ||
      (opts.fresh !== true && (await this.blobExists(repo, desc.digest, [push])) !== undefined)
    ) {
      this.pushSettled(desc.digest, desc.size, "exists");
      return "exists";
    }
    let session: URL | undefined;
    let minChunk = 0;
    const sources = new Set(opts.mountFrom);
    for (const r of this.pushedBlobs?.repositoriesWith(
      repo.registry,
      desc.digest,
      MOUNT_CANDIDATES,
    ) ?? [])
      sources.add(r);
    sources.delete(repo.repository);
    for (const from of sources) {
      const res = await this.send(repo, {
        method: "POST",
        url: `/v2/${repo.repository}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`,
        scopes: [push, repositoryScope(from, "pull")],
        idempotent: true,
        subject,
      });
      await drain(res);
      if (res.statusCode === 201) {
        this.pushSettled(desc.digest, desc.size, "mounted");
        return "mounted";
      }
      if (res.statusCode === 202) {
        // Not mountable (e.g. no pull access to `from`): the registry opened an upload instead.
        session = this.location(repo, res, subject);
        minChunk = Number(header(res, "oci-chunk-min-length") ?? 0);
        break;
      }
      // Any other answer (404; 401 or 403 where the token does not reach `from`): a mount is
      // only a shortcut, the upload below is asked for on its own and reports its own failure.
    }
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        if (session === undefined) ({ session, minChunk } = await this.startUpload(repo, subject));
        const chunk = Math.max(this.chunkSize, minChunk);
        if (desc.size > this.chunkThreshold || (minChunk > 0 && desc.size > minChunk)) {
          await this.uploadChunked(repo, session, desc, open, chunk, subject);
        } else {
          await this.uploadMonolithic(repo, session, desc, open, subject);
        }
        this.pushSettled(desc.digest, desc.size, "done");
        return "uploaded";
      } catch (e) {
        session = undefined;
        if (!(e instanceof RetryableUpload) || !this.mayRetry(attempt, started)) {
          throw e instanceof RetryableUpload ? e.final : e;
        }
        await sleep(this.backoff(attempt - 1));
      }
    }
  }

  /**
   * Starts uploading a blob whose bytes are still being made (a layer being compressed): `body`
   * goes up as one streamed PATCH as it is written (the registry API's stream upload, the one
   * `docker push` sends), and `commit` closes the session once the blob is complete. Nothing is
   * retried: if the registry refuses a step, `commit` rejects and the caller pushes the finished
   * blob the usual way; `body` is destroyed as soon as the upload fails, so its writer can stop.
   */
  uploadWhileWritten(
    repo: RepositoryRef,
    body: Readable,
  ): { commit(desc: Descriptor): Promise<PushResult> } {
    const subject = formatRef(repo);
    const push = repositoryScope(repo.repository, "pull,push");
    const patched = (async () => {
      const { session } = await this.startUpload(repo, subject);
      const res = await this.send(repo, {
        method: "PATCH",
        url: session,
        scopes: [push],
        headers: { "Content-Type": "application/octet-stream" },
        body,
        idempotent: false,
        subject,
      });
      if (res.statusCode !== 202) throw await uploadError(res, subject);
      await drain(res);
      return this.location(repo, res, subject);
    })();
    patched.catch(() => body.destroy());
    return {
      commit: async (desc) => {
        const url = new URL(await patched);
        url.searchParams.set("digest", desc.digest);
        const named = formatRef(repo, desc.digest);
        const res = await this.send(repo, {
          method: "PUT",
          url,
          scopes: [push],
          headers: { "Content-Length": "0" },
          idempotent: false,
          subject: named,
        });
        await this.finishUpload(res, desc, named);
        this.pushedBlobs?.addPushedBlob(repo.registry, repo.repository, desc.digest);
        this.pushSettled(desc.digest, desc.size, "done");
        return "uploaded";
      },
    };
  }

  private async startUpload(
    repo: RepositoryRef,
    subject: string,
  ): Promise<{ session: URL; minChunk: number }> {
    const res = await this.send(repo, {
      method: "POST",
      url: `/v2/${repo.repository}/blobs/uploads/`,
      scopes: [repositoryScope(repo.repository, "pull,push")],
      idempotent: true,
      subject,
    });
    await drain(res);
    if (res.statusCode !== 202) throw await statusError(res, subject, "upload");
    return {
      session: this.location(repo, res, subject),
      minChunk: Number(header(res, "oci-chunk-min-length") ?? 0),
    };
  }

  private async uploadMonolithic(
    repo: RepositoryRef,
    session: URL,
    desc: Descriptor,
    open: () => Readable,
    subject: string,
  ): Promise<void> {
    const url = new URL(session);
    url.searchParams.set("digest", desc.digest);
    const res = await this.sendUpload(repo, {
      method: "PUT",
      url,
      scopes: [repositoryScope(repo.repository, "pull,push")],
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(desc.size) },
      body: () => this.counted(open(), desc),
      idempotent: false,
      subject,
    });
    await this.finishUpload(res, desc, subject);
  }

  private async uploadChunked(
    repo: RepositoryRef,
    session: URL,
    desc: Descriptor,
    open: () => Readable,
    chunkSize: number,
    subject: string,
  ): Promise<void> {
    let url = session;
    let offset = 0;
    // each chunk streams its bytes off one read of the blob (its length is known from the
    // descriptor), so an upload holds no chunk in memory
    const source = new ExactSlices(open(), subject);
    try {
      while (offset < desc.size) {
        const length = Math.min(chunkSize, desc.size - offset);
        const end = offset + length - 1;
        const res = await this.sendUpload(repo, {
          method: "PATCH",
          url,
          scopes: [repositoryScope(repo.repository, "pull,push")],
          headers: {
            "Content-Type": "application/octet-stream",
            "Content-Range": `${offset}-${end}`,
            "Content-Length": String(length),
          },
          body: () => Readable.from(source.take(length)),
          idempotent: false,
          subject,
        });
        await drain(res);
        if (res.statusCode !== 202) throw await uploadError(res, subject);
        url = this.location(repo, res, subject);
        offset = end + 1;
        this.progress({
          direction: "push",
          digest: desc.digest,
          done: offset,
          total: desc.size,
          status: "running",
        });
      }
      await source.end();
    } catch (e) {
      // content of another size than its descriptor breaks the request it was streaming to
      source.close();
      throw source.failure ?? e;
    }
    const final = new URL(url);
    final.searchParams.set("digest", desc.digest);
    const res = await this.sendUpload(repo, {
      method: "PUT",
      url: final,
      scopes: [repositoryScope(repo.repository, "pull,push")],
      headers: { "Content-Length": "0" },
      idempotent: false,
      subject,
    });
    await this.finishUpload(res, desc, subject);
  }

  private async finishUpload(
    res: IncomingMessage,
    desc: Descriptor,
    subject: string,
  ): Promise<void> {
    if (res.statusCode !== 201) throw await uploadError(res, subject);
    await drain(res);
    const stored = header(res, "docker-content-digest");
    if (stored !== undefined && stored !== desc.digest)
      throw digestMismatch(subject, desc.digest, stored);
  }

  /** One request of an upload session; transient failures restart the whole upload. */
  private async sendUpload(repo: RepositoryRef, o: SendOptions): Promise<IncomingMessage> {
    try {
      const res = await this.send(repo, o);
      if (retryableStatus.has(res.statusCode ?? 0))
        throw new RetryableUpload(await statusError(res, o.subject, "upload"));
      return res;
    } catch (e) {
      if (
        e instanceof KilnError &&
        e.code === "E_REGISTRY_UNREACHABLE" &&
        isTransientNetworkError(e.cause)
      ) {
        throw new RetryableUpload(e);
      }
      throw e;
    }
  }

  /** `source` with push progress reported as it is read; source errors carry through. */
  private counted(source: Readable, desc: Descriptor): Readable {
    let done = 0;
    const report = (p: TransferProgress): void => {
      this.progress(p);
    };
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        done += chunk.byteLength;
        report({
          direction: "push",
          digest: desc.digest,
          done,
          total: desc.size,
          status: "running",
        });
        cb(null, chunk);
      },
    });
    source.on("error", (e) => counter.destroy(e));
    return source.pipe(counter);
  }

  private location(repo: RepositoryRef, res: IncomingMessage, subject: string): URL {
    const loc = header(res, "location");
    if (loc === undefined) {
      throw new KilnError("E_REGISTRY", `registry gave no upload location for ${subject}`, {
        hint: "the registry does not follow the distribution spec; retry or report it",
      });
    }
    return new URL(loc, this.baseURL(repo.registry));
  }

  private progress(p: TransferProgress): void {
    this.onProgress?.(p);
  }

  /** A blob's push has ended: it was there, mounted, or uploaded. */
  private pushSettled(digest: string, size: number, status: "exists" | "mounted" | "done"): void {
    this.progress({ direction: "push", digest, done: size, total: size, status });
  }

  private baseURL(registry: string): URL {
    const host =
      registry === "docker.io" || registry === "index.docker.io"
        ? "registry-1.docker.io"
        : registry;
    const plain =
      loopback.test(host) ||
      this.insecure.has(host) ||
      this.insecure.has(host.replace(/:\d+$/, ""));
    return new URL(`${plain ? "http" : "https"}://${host}/`);
  }

  private mayRetry(attempt: number, started: number): boolean {
    return attempt < this.retry.attempts && Date.now() - started < this.retry.maxElapsedMs;
  }

  private backoff(attempt: number, retryAfterSeconds?: number): number {
    if (retryAfterSeconds !== undefined && retryAfterSeconds >= 0) {
      return Math.min(retryAfterSeconds * 1000, this.retry.maxDelayMs);
    }
    const exp = Math.min(this.retry.baseDelayMs * 2 ** attempt, this.retry.maxDelayMs);
    return exp / 2 + Math.random() * (exp / 2);
  }

  /**
   * One logical request: authorization (anonymous first, then what the 401 asks for), retries
   * with backoff on transient failures, redirects without leaking Authorization to other hosts.
   */
  private async send(repo: RepositoryRef, o: SendOptions): Promise<IncomingMessage> {
    const base = this.baseURL(repo.registry);
    const url = typeof o.url === "string" ? new URL(o.url, base) : o.url;
    const ownHost = url.host === base.host;
    const replayable =
      o.body === undefined || Buffer.isBuffer(o.body) || typeof o.body === "function";
    const started = Date.now();
    let authRetries = 0;
    for (let attempt = 1; ; attempt++) {
      const authorization = ownHost
        ? await this.auth.authorization(repo.registry, o.scopes)
        : undefined;
      const headers = { ...o.headers };
      if (authorization !== undefined) headers.Authorization = authorization;
      const body = typeof o.body === "function" ? o.body() : o.body;
      let res: IncomingMessage;
      try {
        res = await this.transport.follow(
          { method: o.method, url, headers, body },
          o.redirects === true,
        );
      } catch (e) {
        if (body instanceof Readable) body.destroy();
        // A failing body source (e.g. corrupt local content) is its own error, not the network's.
        if (e instanceof KilnError) throw e;
        if (isTransientNetworkError(e) && o.idempotent && this.mayRetry(attempt, started)) {
          await sleep(this.backoff(attempt - 1));
          continue;
        }
        throw unreachable(repo, o.subject, e);
      }
      const status = res.statusCode ?? 0;
      if (status === 401 && ownHost && authRetries < 2) {
        const retry = await this.auth.unauthorized(
          repo.registry,
          res.headers,
          o.scopes,
          authorization,
        );
        if (retry && replayable) {
          await drain(res);
          authRetries++;
          attempt--;
          continue;
        }
      }
      if (retryableStatus.has(status) && o.idempotent && this.mayRetry(attempt, started)) {
        await drain(res);
        const after = Number(header(res, "retry-after"));
        await sleep(this.backoff(attempt - 1, Number.isFinite(after) ? after : undefined));
        continue;
      }
      return res;
    }
  }
}

/** An upload step that failed in a way a fresh upload session may not. */
class RetryableUpload extends Error {
  constructor(readonly final: KilnError) {
    super(final.message);
  }
}

/** One stream read as consecutive slices of given lengths (the chunks of an upload). */
class ExactSlices {
  private readonly it: AsyncIterator<unknown>;
  private carry: Buffer | undefined;
  /** Why the content could not be sliced as asked (it fails the request it streams to). */
  failure: KilnError | undefined;

  constructor(
    private readonly source: Readable,
    private readonly subject: string,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** The next `length` bytes; a source that ends before them is an error. */
  async *take(length: number): AsyncGenerator<Buffer> {
    let left = length;
    while (left > 0) {
      let b = this.carry;
      this.carry = undefined;
      if (b === undefined) {
        const r = await this.it.next();
        if (r.done === true) throw this.sizeError("shorter");
        b = r.value as Buffer;
      }
      if (b.byteLength > left) {
        this.carry = b.subarray(left);
        b = b.subarray(0, left);
      }
      left -= b.byteLength;
      yield b;
    }
  }

  close(): void {
    this.source.destroy();
  }

  /** Checks that nothing is left over and closes the source. */
  async end(): Promise<void> {
    const more = this.carry?.byteLength ? false : (await this.it.next()).done !== true;
    const longer = more || (this.carry?.byteLength ?? 0) > 0;
    this.source.destroy();
    if (longer) throw this.sizeError("longer");
  }

  private sizeError(how: string): KilnError {
    this.source.destroy();
    return (this.failure = new KilnError(
      "E_BLOB_SIZE",
      `${this.subject}: the content is ${how} than its descriptor says`,
      { hint: "the local content is corrupt; rebuild it or delete it from the content store" },
    ));
  }
}

function manifestPath(repo: RepositoryRef, reference: string): string {
  return `/v2/${repo.repository}/manifests/${encodeURIComponent(reference).replace(/%3A/gi, ":")}`;
}

function blobPath(repo: RepositoryRef, digest: Digest): string {
  return `/v2/${repo.repository}/blobs/${digest}`;
}

/** `registry/repo:tag` or `registry/repo@sha256:…`, for messages. */
export function formatRef(repo: RepositoryRef, reference?: string): string {
  const name = `${repo.registry}/${repo.repository}`;
  if (reference === undefined) return name;
  return isDigest(reference) ? `${name}@${reference}` : `${name}:${reference}`;
}

function digestMismatch(subject: string, expected: string, actual: string): KilnError {
  return new KilnError(
    "E_DIGEST_MISMATCH",
    `${subject}: content does not match its digest (expected ${expected}, got ${actual})`,
    {
      hint: "the registry served corrupt or changed content; retry, and report it to the registry operator if it persists",
    },
  );
}

function unreachable(repo: RepositoryRef, subject: string, cause: unknown): KilnError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new KilnError(
    "E_REGISTRY_UNREACHABLE",
    `cannot reach registry ${repo.registry} for ${subject}: ${code ?? messageOf(cause)}`,
    {
      hint:
        code === "ENOTFOUND"
          ? "check the registry name in the reference"
          : "check that the registry is running and reachable; a plain-HTTP registry must be marked insecure",
      cause,
    },
  );
}

/** Turn a failed response into a one-line error naming the reference, with the registry's own code. */
async function statusError(
  res: IncomingMessage,
  subject: string,
  what: "manifest" | "blob" | "upload",
): Promise<KilnError> {
  const status = res.statusCode ?? 0;
  const detail = await registryErrorDetail(res);
  const suffix = detail === "" ? "" : ` (${detail})`;
  if (status === 401 || status === 403) {
    return new KilnError(
      "E_REGISTRY_AUTH",
      `${status === 401 ? "not authorized" : "access denied"} for ${subject}${suffix}`,
      {
        hint: `check the repository name and your credentials for it (docker login ${subject.split("/")[0]})`,
      },
    );
  }
  if (status === 404) {
    if (what === "manifest") {
      return new KilnError("E_MANIFEST_UNKNOWN", `${subject} not found${suffix}`, {
        hint: "check the repository name and the tag or digest",
      });
    }
    return new KilnError("E_BLOB_UNKNOWN", `${subject}: blob not found${suffix}`, {
      hint: "the image refers to content the registry does not have; push it again",
    });
  }
  return new KilnError("E_REGISTRY", `registry answered ${status} for ${subject}${suffix}`, {
    hint:
      status >= 500 || status === 429
        ? "the registry is failing or busy; retry later"
        : "see the registry's message",
  });
}

async function uploadError(res: IncomingMessage, subject: string): Promise<KilnError> {
  const e = await statusError(res, subject, "upload");
  if (/DIGEST_INVALID/.test(e.message)) {
    return new KilnError(
      "E_DIGEST_MISMATCH",
      `${subject}: the registry rejected the upload: content does not match its digest`,
      {
        hint: "the local content is corrupt; rebuild it or delete it from the content store",
      },
    );
  }
  return e;
}

/** `CODE: message` of a distribution error body, if any (bounded; never echoes request data). */
async function registryErrorDetail(res: IncomingMessage): Promise<string> {
  let body: Buffer;
  try {
    body = await readBody(res, 64 << 10);
  } catch {
    return "";
  }
  try {
    const parsed = JSON.parse(body.toString("utf8")) as {
      errors?: { code?: unknown; message?: unknown }[];
    };
    const first = parsed.errors?.[0];
    if (first === undefined) return "";
    return [first.code, first.message].filter((x) => typeof x === "string" && x !== "").join(": ");
  } catch {
    return "";
  }
}
