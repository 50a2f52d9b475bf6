/**
 * Layer blobs: compress a tar while hashing both sides in the same pass, and the reverse
 * (decompress, hash, apply, verify the diffID).
 */
import { createHash, type Hash } from "node:crypto";
import { accessSync, constants as fsConstants, createWriteStream } from "node:fs";
import { join } from "node:path";
import { rm } from "node:fs/promises";
import { PassThrough, Readable, type Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants as zc, createGunzip, createGzip, gzipSync } from "node:zlib";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { filterThrough, filterToFile, type FilterFailure } from "../process/index.js";
import { applyLayer, type ApplyOptions } from "./extract.js";
import { invalidLayer } from "./errors.js";

export type Compression = "gzip" | "zstd" | "uncompressed";

export const LAYER_MEDIA_TYPES: Record<Compression, string> = {
  uncompressed: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

export interface CompressedLayer {
  /** sha256:<hex> of the blob as written. */
  digest: string;
  size: number;
  /** sha256:<hex> of the uncompressed tar. */
  diffID: string;
  uncompressedSize: number;
  mediaType: string;
}

/** Compression of a layer media type (OCI and Docker schema 2, incl. non-distributable). */
export function compressionOf(mediaType: string): Compression {
  if (/(\+|\.tar\.)gzip$/.test(mediaType)) return "gzip";
  if (/(\+|\.tar\.)zstd$/.test(mediaType)) return "zstd";
  if (/[./]tar$/.test(mediaType)) return "uncompressed";
  throw new KilnError("E_LAYER_MEDIATYPE", `unsupported layer media type ${mediaType}`, {
    hint: "kiln reads tar layers compressed with gzip or zstd, or uncompressed",
  });
}

/** Counts and hashes the bytes of a source as it is read (see `tally`). */
class Tally {
  private readonly hash: Hash = createHash("sha256");
  size = 0;

  add(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  digest(): string {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

/** `src` as it is, counted and hashed into `t` on the way. */
async function* tally(src: AsyncIterable<Uint8Array>, t: Tally): AsyncGenerator<Buffer> {
  for await (const c of src) {
    t.add(c);
    yield asBuffer(c);
  }
}

/**
 * `src` for a consumer that keeps chunks (a zlib stream, a blob writer): small chunks are
 * handed on joined (up to FEED_CHUNK), since a tar comes as 512-byte headers and paddings
 * between file bodies and each chunk costs a write and a turn of the event loop. Large chunks
 * pass as they are (copying them costs more than that), except from a `transient` source,
 * whose every chunk is copied.
 */
async function* owned(src: AsyncIterable<Uint8Array>, transient: boolean): AsyncGenerator<Buffer> {
  let pending: Uint8Array[] = [];
  let pendingSize = 0;
  const flush = (): Buffer => {
    const joined =
      pending.length === 1 && !transient
        ? asBuffer(pending[0]!)
        : Buffer.concat(pending, pendingSize);
    pending = [];
    pendingSize = 0;
    return joined;
  };
  for await (const c of src) {
    if (c.length >= FEED_CHUNK) {
      if (pendingSize > 0) yield flush();
      yield transient ? Buffer.from(c) : asBuffer(c);
      continue;
    }
    // a transient chunk is gone once the next is asked for: its bytes are kept, not it
    pending.push(transient ? Buffer.from(c) : c);
    pendingSize += c.length;
    if (pendingSize >= FEED_CHUNK) yield flush();
  }
  if (pendingSize > 0) yield flush();
}

const FEED_CHUNK = 64 * 1024;

function asBuffer(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

const programsFound = new Map<string, boolean>();

/** Whether a program is on PATH (looked up once per program). */
function onPath(program: string): boolean {
  let found = programsFound.get(program);
  if (found === undefined) {
    found = (process.env.PATH ?? "").split(":").some((dir) => {
      try {
        accessSync(join(dir || ".", program), fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    programsFound.set(program, found);
  }
  return found;
}

function zstdLevel(level: number | undefined): string {
  return `-${level ?? 3}`;
}

/** Where a compressed blob goes: consumes the stream, returns its digest and size. */
export type BlobWriter = (blob: Readable) => Promise<{ digest: string; size: number }>;

/**
 * Where a compressed blob goes when a program writes it: `fill` writes the whole blob into the
 * descriptor it is given; returns the blob's digest and size.
 */
export type BlobFileWriter = (
  fill: (fd: number) => Promise<void>,
) => Promise<{ digest: string; size: number }>;

export interface CompressOptions {
  compression: Compression;
  level?: number;
  /**
   * Lets a compressor program (igzip or pigz, for gzip) write a large blob itself: its output
   * then never passes through kiln's thread.
   */
  writeFile?: BlobFileWriter;
  /**
   * The tar's chunks are valid only until the next is asked for (a walk that reads every file
   * through one buffer): whatever keeps one copies it.
   */
  transient?: boolean;
}

/**
 * Compress a layer tar into destFile, hashing the tar (diffID) and the blob (digest) in the
 * same pass.
 */
export async function compressLayer(
  tar: AsyncIterable<Uint8Array>,
  destFile: string,
  opts: Omit<CompressOptions, "writeFile">,
): Promise<CompressedLayer> {
  const toFile: BlobWriter = async (blob) => {
    const packed = new Tally();
    await pipeline(tally(blob, packed), createWriteStream(destFile));
    return { digest: packed.digest(), size: packed.size };
  };
  try {
    return await compressLayerTo(tar, toFile, opts);
  } catch (e) {
    await rm(destFile, { force: true });
    throw e;
  }
}

/**
 * Compress a layer tar straight into `write` (e.g. the content store's ingest, which hashes
 * the blob as it writes it), or into `opts.writeFile`, hashing the tar (diffID) on the way:
 * one pass, one write. gzip output is deterministic (gzipLayer); zstd runs the zstd CLI, whose
 * multi-threaded output does not depend on the thread count.
 */
export async function compressLayerTo(
  tar: AsyncIterable<Uint8Array>,
  write: BlobWriter,
  opts: CompressOptions,
): Promise<CompressedLayer> {
  const raw = new Tally();
  const fail = (detail: string, cause?: unknown) =>
    new KilnError("E_LAYER_COMPRESS", `compressing layer: ${detail}`, {
      hint: "check free space where the blob is written",
      cause,
    });
  // gzip of a large tar by a program that writes the blob file itself, when the writer can
  // give it one; everything else streams through `write`
  const program =
    opts.compression === "gzip" && opts.writeFile ? gzipProgram(opts.level) : undefined;
  const transient = opts.transient === true;
  let compressor: (src: AsyncIterable<Uint8Array>) => AsyncIterable<Buffer>;
  switch (opts.compression) {
    case "gzip":
      compressor = (src) => gzipLayer(src, opts.level, fail, transient);
      break;
    case "zstd":
      compressor = (src) =>
        filterThrough("zstd", ["-q", "-c", "-T0", zstdLevel(opts.level)], src, fail);
      break;
    case "uncompressed":
      compressor = (src) => owned(src, transient);
      break;
  }
  let written: { digest: string; size: number };
  const tallied = tally(tar, raw);
  try {
    let src: AsyncIterable<Uint8Array> = tallied;
    const { writeFile } = opts;
    if (program && writeFile) {
      const { ended, rest } = await peek(src, SMALL_TAR);
      src = rest;
      if (!ended) {
        written = await writeFile((fd) => filterToFile(program.file, program.args, rest, fd, fail));
        return done(written);
      }
    }
    const blob = new PassThrough();
    // a writer that gives up must stop the compressor too (else the pipeline waits forever)
    const writing = write(blob).catch((e: unknown) => {
      blob.destroy(e instanceof Error ? e : new Error(String(e)));
      throw e;
    });
    [, written] = await Promise.all([pipeline(src, compressor, blob), writing]);
  } catch (e) {
    // whatever stopped reading the tar, its source (open files of a walk) is closed now
    tallied.return(undefined).catch(() => undefined);
    if (isKilnError(e)) throw e;
    throw fail(messageOf(e), e);
  }
  return done(written);

  function done(w: { digest: string; size: number }): CompressedLayer {
    return {
      digest: w.digest,
      size: w.size,
      diffID: raw.digest(),
      uncompressedSize: raw.size,
      mediaType: LAYER_MEDIA_TYPES[opts.compression],
    };
  }
}

/** A tar this small is gzipped in-process: starting a program would cost more than compressing. */
const SMALL_TAR = 256 * 1024;

/**
 * ISA-L's level for gzip without a chosen level: its best ratio, which on this project's
 * benchmark data is Go's default (BuildKit's) within 1% on text and 8% on binaries, at a tenth
 * of zlib's CPU time.
 */
const IGZIP_ARGS = ["-c", "-n", "-3"];

/**
 * gzip of a layer tar. A small tar (the whole of it within SMALL_TAR) is compressed with
 * node:zlib in one call. A larger one goes through igzip (ISA-L) when no level is chosen, and
 * through pigz at the chosen zlib level otherwise; both write no name and no time (-n), and
 * their output does not depend on the thread count. Without either, node:zlib streams it.
 * The choice depends only on the content and the installed programs, so a layer always gets
 * the same bytes on one machine.
 */
async function* gzipLayer(
  src: AsyncIterable<Uint8Array>,
  level: number | undefined,
  fail: FilterFailure,
  transient: boolean,
): AsyncGenerator<Buffer> {
  const { head, ended, rest } = await peek(src, SMALL_TAR);
  const program = gzipProgram(level);
  const zlevel = level ?? zc.Z_DEFAULT_COMPRESSION;
  if (ended) yield gzipSync(head, { level: zlevel });
  else if (program) yield* filterThrough(program.file, program.args, rest, fail);
  else yield* through(owned(rest, transient), createGzip({ level: zlevel, chunkSize: 64 * 1024 }));
}

/** The installed program that gzips a large tar: igzip without a level, pigz with one. */
function gzipProgram(level: number | undefined): { file: string; args: string[] } | undefined {
  if (level === undefined && onPath("igzip")) return { file: "igzip", args: IGZIP_ARGS };
  if (onPath("pigz")) return { file: "pigz", args: ["-c", "-n", `-${level ?? 6}`] };
  return undefined;
}

/**
 * A blob this small is gunzipped by node:zlib (on its thread pool): starting igzip blocks
 * kiln's thread longer than inflating it takes.
 */
const SMALL_GZIP_BLOB = 4 * 1024 * 1024;

/**
 * gunzip of a layer blob: a small one in-process (streamed: a small blob may expand to a
 * large tar), a larger one by igzip (about four times node:zlib's speed) when installed.
 */
async function* gunzipLayer(
  src: AsyncIterable<Uint8Array>,
  fail: FilterFailure,
  blobSize: number | undefined,
): AsyncGenerator<Buffer> {
  // a size known from the blob's descriptor decides at once: no reading ahead, so a blob
  // being downloaded is unpacked as it arrives
  let small = blobSize === undefined ? undefined : blobSize <= SMALL_GZIP_BLOB;
  if (small === undefined) ({ ended: small, rest: src } = await peek(src, SMALL_GZIP_BLOB));
  if (!small && onPath("igzip")) yield* filterThrough("igzip", ["-d", "-c"], src, fail);
  else yield* through(src, createGunzip());
}

/**
 * The first bytes of a source, at least `limit` unless it ends sooner (`ended`), and the whole
 * source again as `rest`.
 */
async function peek(
  src: AsyncIterable<Uint8Array>,
  limit: number,
): Promise<{ head: Buffer; ended: boolean; rest: AsyncIterable<Uint8Array> }> {
  const it = src[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  while (size <= limit) {
    const r = await it.next();
    if (r.done) {
      const head = Buffer.concat(chunks);
      return { head, ended: true, rest: prepend(head, it) };
    }
    chunks.push(Buffer.from(r.value)); // a copy: the source may reuse its buffer
    size += r.value.byteLength;
  }
  const head = Buffer.concat(chunks);
  return { head, ended: false, rest: prepend(head, it) };
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * A source with some already-read bytes put back in front; the source is closed however the
 * reading ends.
 */
export async function* prepend(
  head: Uint8Array,
  rest: AsyncIterator<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  try {
    if (head.length > 0) yield head;
    for (let r = await rest.next(); r.done !== true; r = await rest.next()) yield r.value;
  } finally {
    await rest.return?.();
  }
}

async function* through(src: AsyncIterable<Uint8Array>, t: Duplex): AsyncGenerator<Buffer> {
  const feeding = pipeline(src, t).catch(() => undefined); // errors surface on t's readable side
  try {
    for await (const c of t) yield c as Buffer;
    await feeding;
  } finally {
    t.destroy();
  }
}

async function* decompress(
  input: AsyncIterable<Uint8Array>,
  kind: Compression | undefined,
  blobSize?: number,
): AsyncGenerator<Buffer> {
  let src: AsyncIterable<Uint8Array> = input;
  if (kind === undefined) {
    const { head, rest } = await peek(input, ZSTD_MAGIC.length - 1);
    kind = head.subarray(0, 2).equals(GZIP_MAGIC)
      ? "gzip"
      : head.subarray(0, 4).equals(ZSTD_MAGIC)
        ? "zstd"
        : "uncompressed";
    src = rest;
  }
  const fail = (detail: string, cause?: unknown) =>
    invalidLayer(`decompressing layer: ${detail}`, cause);
  try {
    if (kind === "gzip") yield* gunzipLayer(src, fail, blobSize);
    else if (kind === "zstd") yield* filterThrough("zstd", ["-d", "-q", "-c"], src, fail);
    else for await (const c of src) yield Buffer.from(c);
  } catch (e) {
    if (isKilnError(e)) throw e;
    throw fail(messageOf(e), e);
  }
}

/**
 * The uncompressed tar of a layer blob. With a media type the compression is taken from it;
 * without one it is detected from the magic bytes (gzip, zstd, else plain tar).
 */
export function decompressStream(
  blob: AsyncIterable<Uint8Array>,
  mediaType?: string,
  blobSize?: number,
): Readable {
  return Readable.from(
    decompress(blob, mediaType === undefined ? undefined : compressionOf(mediaType), blobSize),
    { objectMode: false },
  );
}

/** How a layer blob is applied (plain data: it crosses to the worker threads too). */
export interface LayerApply extends ApplyOptions {
  expectedDiffID: string;
  /** the blob's size from its descriptor: the decompressor is chosen without reading ahead */
  blobSize?: number;
}

export interface AppliedLayer {
  diffID: string;
  uncompressedSize: number;
}

/**
 * Decompress, extract and verify a layer blob in one pass. A diffID mismatch is only known
 * once the whole stream has been read, i.e. after extraction: the caller must then discard
 * targetDir.
 */
export async function applyLayerBlob(
  blob: AsyncIterable<Uint8Array>,
  mediaType: string | undefined,
  targetDir: string,
  opts: LayerApply,
): Promise<AppliedLayer> {
  const hash = createHash("sha256");
  let size = 0;
  async function* hashed(): AsyncGenerator<Buffer> {
    const kind = mediaType === undefined ? undefined : compressionOf(mediaType);
    for await (const c of decompress(blob, kind, opts.blobSize)) {
      hash.update(c);
      size += c.length;
      yield c;
    }
  }
  await applyLayer(hashed(), targetDir, opts);
  const diffID = `sha256:${hash.digest("hex")}`;
  if (diffID !== opts.expectedDiffID) {
    throw new KilnError(
      "E_LAYER_DIGEST",
      `layer diffID mismatch: expected ${opts.expectedDiffID}, got ${diffID}; ${targetDir} was already extracted from it and must be discarded`,
      { hint: "the blob does not match the image config; pull it again or rebuild the image" },
    );
  }
  return { diffID, uncompressedSize: size };
}
