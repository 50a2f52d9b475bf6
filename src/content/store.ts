import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, renameSync, statSync, writeFileSync } from "node:fs";
import {
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
  type FileHandle,
} from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { KilnError, messageOf } from "../errors.js";
import { MediaType } from "../oci/mediatypes.js";
import { digestOf, encodeJSON, sha256Hex } from "../oci/encode.js";
import { parseIndex } from "../oci/parse.js";
import type { Descriptor, Digest, ImageIndex } from "../oci/types.js";
import { syncDir } from "../durable.js";

export const refNameAnnotation = "org.opencontainers.image.ref.name";

/**
 * The digest and length of an open file, read through one buffer: a stream's fresh buffer per
 * chunk costs page faults on new memory (a 15 MB layer blob: 50–65 ms against 12–17 here).
 */
async function digestOfFile(fh: FileHandle): Promise<BlobInfo> {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1024 * 1024);
  let size = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, size);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    size += bytesRead;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

export interface Expected {
  digest?: Digest;
  size?: number;
}

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/**
 * Where a shared store keeps its index entries (kiln's state dir: the metadata database). The
 * update is one cross-process transaction; `mirror` writes index.json inside it.
 */
export interface IndexRecords {
  /** the index's entries, oldest first */
  imageRefs(): unknown[];
  /** a named entry replaces that name's entry, an unnamed one the unnamed entry of its digest */
  putImageRef(
    entry: Descriptor,
    name: string | undefined,
    mirror: (entries: unknown[]) => void,
  ): void;
}

/** Temp files live inside the store so the final rename never crosses a file system. */
const ingestDir = ".ingest";

/**
 * Blobs by digest on disk, laid out as an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`), so the store itself can be handed to skopeo/umoci. Every write goes
 * to a private temp file, is hashed on the fly, fsynced, verified and renamed into place: a
 * blob path only ever holds complete, verified content, and concurrent writers of the same blob
 * each rename identical bytes. Reads verify the digest as they stream.
 */
export class ContentStore {
  /** Serialises index.json updates within this process when there are no shared records. */
  private indexQueue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly root: string,
    private readonly records: IndexRecords | undefined,
  ) {}

  /**
   * Open (creating if needed) the layout at `root`. With `records`, index entries live there
   * (index.json becomes their mirror); without, in index.json (one process at a time).
   */
  static async open(root: string, records?: IndexRecords): Promise<ContentStore> {
    await mkdir(join(root, "blobs", "sha256"), { recursive: true });
    await mkdir(join(root, ingestDir), { recursive: true });
    await writeIfAbsent(join(root, "oci-layout"), encodeJSON({ imageLayoutVersion: "1.0.0" }));
    await writeIfAbsent(
      join(root, "index.json"),
      encodeJSON({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }, 2),
    );
    return new ContentStore(root, records);
  }

  path(digest: Digest): string {
    return join(this.root, "blobs", "sha256", hexOf(digest));
  }

  async has(digest: Digest): Promise<boolean> {
    try {
      return (await stat(this.path(digest))).isFile();
    } catch {
      return false;
    }
  }

  /** Size on disk of a stored blob. */
  async size(digest: Digest): Promise<number> {
    try {
      return (await stat(this.path(digest))).size;
    } catch (e) {
      throw notFound(digest, this.root, e);
    }
  }

  /**
   * Stream content into the store. With `expected.digest` the content must hash to it (else
   * E_DIGEST_MISMATCH and nothing is stored); with `expected.size` it must have that length.
   */
  async ingest(
    source: Readable | AsyncIterable<Uint8Array>,
    expected: Expected = {},
  ): Promise<BlobInfo> {
    return this.#store(expected, async (tmp) => {
      const hasher = new HashingTransform(expected.size);
      // Opened before the source is read: a stream opening its own file could create it after
      // a failed source's cleanup has run. flush: fsync before close, so a renamed blob is durable.
      const file = await open(tmp, "wx");
      await pipeline(source, hasher, createWriteStream(tmp, { fd: file, flush: true }));
      return { digest: hasher.digest(), size: hasher.bytes };
    });
  }

  /**
   * Store a blob a program writes: `fill` gets the descriptor of a private temp file (say, a
   * compressor's stdout) and resolves once the whole blob is in it. The file is then hashed
   * (one read of what the page cache still holds) while it is fsynced, verified and renamed
   * into place, as ingest does with a stream.
   */
  async ingestWritten(
    fill: (fd: number) => Promise<void>,
    expected: Expected = {},
  ): Promise<BlobInfo> {
    return this.#store(expected, async (tmp) => {
      const fh = await open(tmp, "wx+");
      try {
        await fill(fh.fd);
        const [, info] = await Promise.all([fh.sync(), digestOfFile(fh)]);
        return info;
      } finally {
        await fh.close();
      }
    });
  }

  /**
   * A blob written to a private temp file by `write` (which returns what it wrote), verified
   * and renamed into place; the temp file never outlives a failure.
   */
  async #store(expected: Expected, write: (tmp: string) => Promise<BlobInfo>): Promise<BlobInfo> {
    if (expected.digest !== undefined) hexOf(expected.digest);
    const tmp = join(this.root, ingestDir, `${Date.now()}-${randomBytes(8).toString("hex")}`);
    try {
      const info = await write(tmp);
      checkExpected(info, expected, "content being stored");
      await rename(tmp, this.path(info.digest));
      await syncDir(join(this.root, "blobs", "sha256"));
      return info;
    } catch (e) {
      await rm(tmp, { force: true });
      if (e instanceof KilnError) throw e;
      throw new KilnError("E_CONTENT_WRITE", `cannot store blob in ${this.root}: ${messageOf(e)}`, {
        hint: "check free space and permissions of the content store",
        cause: e,
      });
    }
  }

  /**
   * Store a small blob held in memory. One already stored is not written again: a blob path
   * only ever holds complete, verified content, and the write would cost two fsyncs.
   */
  async putBytes(bytes: Uint8Array, expected: Expected = {}): Promise<BlobInfo> {
    return this.storeBytes(bytes, expected).stored;
  }

  /**
   * putBytes, giving the blob's descriptor at once (it follows from the bytes) beside the
   * promise of its write, so that documents naming each other need not wait for each other.
   */
  storeBytes(
    bytes: Uint8Array,
    expected: Expected = {},
  ): { info: BlobInfo; stored: Promise<BlobInfo> } {
    if (expected.digest !== undefined) hexOf(expected.digest);
    const info = { digest: digestOf(bytes), size: bytes.length };
    checkExpected(info, expected, "content being stored");
    if (statSync(this.path(info.digest), { throwIfNoEntry: false })?.size === info.size)
      return { info, stored: Promise.resolve(info) };
    // written in one call, not streamed: a stream's turns cost more than the write
    const stored = this.#store(expected, async (tmp) => {
      const fh = await open(tmp, "wx");
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return info;
    });
    return { info, stored };
  }

  /** A stream of the blob that fails at its end with E_DIGEST_MISMATCH if the file is corrupt. */
  openRead(digest: Digest): Readable {
    return openVerified(this.path(digest), digest, this.blobErrors(digest));
  }

  /** Read a small blob (a manifest, index or config) whole, verified. */
  readBytes(digest: Digest): Promise<Buffer> {
    return readVerified(this.path(digest), digest, this.blobErrors(digest));
  }

  private blobErrors(digest: Digest): BlobErrors {
    return {
      unreadable: (e) => notFound(digest, this.root, e),
      corrupt: (actual) => corrupt(digest, actual, this.root),
    };
  }

  /** Where blobs and in-progress writes live (for `kiln du`/`prune`). */
  get dirs(): { blobs: string; ingest: string } {
    return { blobs: join(this.root, "blobs", "sha256"), ingest: join(this.root, ingestDir) };
  }

  /** Digests of every stored blob. */
  async list(): Promise<Digest[]> {
    const names = await readdir(this.dirs.blobs);
    return names.filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  async readIndex(): Promise<ImageIndex> {
    if (this.records) {
      return parseIndex(
        encodeJSON(indexOf(this.records.imageRefs())),
        undefined,
        `${this.root} index records`,
      );
    }
    const file = join(this.root, "index.json");
    return parseIndex(await readFile(file), undefined, file);
  }

  /**
   * Add a descriptor to index.json. With `refName`, it is recorded as the
   * `org.opencontainers.image.ref.name` annotation and replaces any entry of that name.
   */
  addToIndex(desc: Descriptor, refName?: string): Promise<void> {
    const entry: Descriptor =
      refName === undefined
        ? desc
        : { ...desc, annotations: { ...desc.annotations, [refNameAnnotation]: refName } };
    if (this.records) {
      this.records.putImageRef(entry, refName, (entries) => {
        // synchronous: it runs inside the records' transaction
        const tmp = join(this.root, ingestDir, `index-${randomBytes(8).toString("hex")}.json`);
        writeFileSync(tmp, encodeJSON(indexOf(entries), 2));
        renameSync(tmp, join(this.root, "index.json"));
      });
      return Promise.resolve();
    }
    const next = this.indexQueue.then(async () => {
      const index = await this.readIndex();
      const kept = index.manifests.filter((m) =>
        refName === undefined
          ? !(m.digest === desc.digest && m.annotations?.[refNameAnnotation] === undefined)
          : m.annotations?.[refNameAnnotation] !== refName,
      );
      const updated: ImageIndex = { ...index, manifests: [...kept, entry] };
      const tmp = join(this.root, ingestDir, `index-${randomBytes(8).toString("hex")}.json`);
      await writeFile(tmp, encodeJSON(updated, 2));
      await rename(tmp, join(this.root, "index.json"));
    });
    // A failed update must not poison later ones.
    this.indexQueue = next.catch(() => undefined);
    return next;
  }
}

function indexOf(manifests: unknown[]): unknown {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
}

/** How a verified read of a blob file reports failure: the caller names the blob's owner. */
export interface BlobErrors {
  /** the file cannot be opened or read (ENOENT: not there) */
  unreadable: (cause: unknown) => KilnError;
  /** the content hashes to `actual`, not to its digest */
  corrupt: (actual: Digest) => KilnError;
}

/** A stream of a blob file that fails at its end unless its content hashes to `digest`. */
export function openVerified(file: string, digest: Digest, errors: BlobErrors): Readable {
  const verifier = new HashingTransform(undefined, { digest, corrupt: errors.corrupt });
  const stream = createReadStream(file);
  stream.on("error", (e) => verifier.destroy(errors.unreadable(e)));
  return stream.pipe(verifier);
}

/** A small blob file (a manifest, index or config) read whole and verified against `digest`. */
export async function readVerified(
  file: string,
  digest: Digest,
  errors: BlobErrors,
): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw errors.unreadable(e);
  }
  const actual = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  if (actual !== digest) throw errors.corrupt(actual);
  return bytes;
}

/** Hashes and counts what passes through; optionally enforces a size limit or verifies a digest. */
class HashingTransform extends Transform {
  private readonly hash = createHash("sha256");
  bytes = 0;

  constructor(
    private readonly maxSize?: number,
    private readonly verify?: { digest: Digest; corrupt: (actual: Digest) => KilnError },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.byteLength;
    if (this.maxSize !== undefined && this.bytes > this.maxSize) {
      cb(sizeMismatch(this.maxSize, this.bytes, "content being stored", true));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.verify !== undefined) {
      const actual = this.digest();
      if (actual !== this.verify.digest) {
        cb(this.verify.corrupt(actual));
        return;
      }
    }
    cb();
  }

  private digestValue: string | undefined;
  digest(): Digest {
    this.digestValue ??= `sha256:${this.hash.digest("hex")}`;
    return this.digestValue;
  }
}

/** Throws E_DIGEST_MISMATCH when content does not match what its descriptor promised. */
export function checkExpected(actual: BlobInfo, expected: Expected, what: string): void {
  if (expected.size !== undefined && actual.size !== expected.size) {
    throw sizeMismatch(expected.size, actual.size, what, false);
  }
  if (expected.digest !== undefined && actual.digest !== expected.digest) {
    throw new KilnError(
      "E_DIGEST_MISMATCH",
      `${what}: expected ${expected.digest}, got ${actual.digest}`,
      {
        hint: "the content changed in transit or at its source; retry, and check the source if it persists",
      },
    );
  }
}

function sizeMismatch(expected: number, actual: number, what: string, atLeast: boolean): KilnError {
  return new KilnError(
    "E_DIGEST_MISMATCH",
    `${what}: expected ${expected} bytes, got ${atLeast ? "more than that" : actual}`,
    {
      hint: "the content changed in transit or at its source; retry, and check the source if it persists",
    },
  );
}

function corrupt(digest: Digest, actual: Digest, root: string): KilnError {
  return new KilnError(
    "E_DIGEST_MISMATCH",
    `blob ${digest} in ${root} is corrupt (its content hashes to ${actual})`,
    {
      hint: "delete the blob (or the content store) so it is fetched or built again",
    },
  );
}

function notFound(digest: Digest, root: string, cause: unknown): KilnError {
  const missing = (cause as NodeJS.ErrnoException).code === "ENOENT";
  return new KilnError(
    missing ? "E_BLOB_NOT_FOUND" : "E_CONTENT_READ",
    missing
      ? `blob ${digest} is not in ${root}`
      : `cannot read blob ${digest} in ${root}: ${messageOf(cause)}`,
    {
      hint: missing ? "pull or build the image again" : "check permissions of the content store",
      cause,
    },
  );
}

function hexOf(digest: Digest): string {
  try {
    return sha256Hex(digest);
  } catch {
    throw new KilnError("E_DIGEST_INVALID", `not a sha256 digest: ${JSON.stringify(digest)}`, {
      hint: "digests look like sha256:<64 hex characters>",
    });
  }
}

async function writeIfAbsent(file: string, bytes: Buffer): Promise<void> {
  try {
    await writeFile(file, bytes, { flag: "wx" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
}

/**
 * Small documents (configs, manifests, statements, an index) stored together: each one's
 * descriptor is known from its bytes at once, so documents that name each other need not wait
 * for each other's writes (an fsync pair each). `stored` waits for every write.
 */
export class DocumentBatch {
  readonly #writes: Promise<unknown>[] = [];

  constructor(private readonly content: ContentStore) {}

  put(bytes: Uint8Array): BlobInfo {
    const { info, stored } = this.content.storeBytes(bytes);
    stored.catch(() => undefined); // a failure is reported by stored()
    this.#writes.push(stored);
    return info;
  }

  async stored(): Promise<void> {
    await Promise.all(this.#writes);
  }
}
