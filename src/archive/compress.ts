/**
 * Layer blobs: compress a tar while hashing both sides in the same pass, and the reverse
 * (decompress, hash, apply, verify the diffID).
 */
import { createHash, type Hash } from "node:crypto";
import { accessSync, constants as fsConstants, createWriteStream } from "node:fs";
import { join } from "node:path";
import { rm } from "node:fs/promises";
import { PassThrough, Readable, Transform, type Duplex, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants as zc, createGunzip, createGzip } from "node:zlib";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { filterThrough } from "../process/index.js";
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

/** Counts and hashes the bytes flowing through. */
class Digester extends Transform {
  private readonly hash: Hash = createHash("sha256");
  size = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }

  digest(): string {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

let pigzFound: boolean | undefined;

/** Whether the pigz program is on PATH (looked up once). */
function hasPigz(): boolean {
  pigzFound ??= (process.env.PATH ?? "").split(":").some((dir) => {
    try {
      accessSync(join(dir || ".", "pigz"), fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return pigzFound;
}

function zstdLevel(level: number | undefined): string {
  return `-${level ?? 3}`;
}

/**
 * Compress a layer tar into destFile, hashing the tar (diffID) and the blob (digest) in the
 * same pass. gzip output is deterministic (node:zlib writes mtime 0, no name); zstd runs the
 * zstd CLI, whose multi-threaded output does not depend on the thread count.
 */
export async function compressLayer(
  tar: Readable,
  destFile: string,
  opts: { compression: Compression; level?: number },
): Promise<CompressedLayer> {
  const raw = new Digester();
  const packed = new Digester();
  const fail = (detail: string, cause?: unknown) =>
    new KilnError("E_LAYER_COMPRESS", `compressing layer: ${detail}`, {
      hint: "check free space where the blob is written",
      cause,
    });
  let compressor: Duplex | ((src: AsyncIterable<Uint8Array>) => AsyncIterable<Buffer>);
  switch (opts.compression) {
    case "gzip":
      // pigz compresses on every core; its output (-n: no name, no time) is the same whatever
      // the thread count, so layers stay reproducible. node:zlib is the fallback.
      compressor = hasPigz()
        ? (src) => filterThrough("pigz", ["-c", "-n", `-${opts.level ?? 6}`], src, fail)
        : createGzip({ level: opts.level ?? zc.Z_DEFAULT_COMPRESSION, chunkSize: 64 * 1024 });
      break;
    case "zstd":
      compressor = (src) =>
        filterThrough("zstd", ["-q", "-c", "-T0", zstdLevel(opts.level)], src, fail);
      break;
    case "uncompressed":
      compressor = new PassThrough();
      break;
  }
  try {
    await pipeline(tar, raw, compressor, packed, createWriteStream(destFile));
  } catch (e) {
    await rm(destFile, { force: true });
    if (isKilnError(e)) throw e;
    throw fail(messageOf(e), e);
  }
  return {
    digest: packed.digest(),
    size: packed.size,
    diffID: raw.digest(),
    uncompressedSize: raw.size,
    mediaType: LAYER_MEDIA_TYPES[opts.compression],
  };
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Iterate a source with some already-read bytes put back in front. */
async function* prepend(head: Buffer, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (head.length > 0) yield head;
  for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
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
): AsyncGenerator<Buffer> {
  let src: AsyncIterable<Uint8Array> = input;
  if (kind === undefined) {
    const it = input[Symbol.asyncIterator]();
    let head = Buffer.alloc(0);
    while (head.length < 4) {
      const r = await it.next();
      if (r.done) break;
      head = Buffer.concat([head, r.value]);
    }
    kind = head.subarray(0, 2).equals(GZIP_MAGIC)
      ? "gzip"
      : head.subarray(0, 4).equals(ZSTD_MAGIC)
        ? "zstd"
        : "uncompressed";
    src = prepend(head, it);
  }
  const fail = (detail: string, cause?: unknown) =>
    invalidLayer(`decompressing layer: ${detail}`, cause);
  try {
    if (kind === "gzip") yield* through(src, createGunzip());
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
export function decompressStream(blob: AsyncIterable<Uint8Array>, mediaType?: string): Readable {
  return Readable.from(
    decompress(blob, mediaType === undefined ? undefined : compressionOf(mediaType)),
    { objectMode: false },
  );
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
  opts: ApplyOptions & { expectedDiffID: string },
): Promise<{ diffID: string; uncompressedSize: number }> {
  const hash = createHash("sha256");
  let size = 0;
  async function* hashed(): AsyncGenerator<Buffer> {
    const kind = mediaType === undefined ? undefined : compressionOf(mediaType);
    for await (const c of decompress(blob, kind)) {
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
