/**
 * ADD's local archive extraction. A source is an archive when, after decompression (gzip,
 * bzip2, xz or zstd, recognised by magic bytes, never by name), it starts with a valid tar
 * header: the test BuildKit applies. The extraction itself is archive/'s one extractor, with
 * ADD's differences as options: `.wh.` names are ordinary files, symlinks already in the
 * destination are followed inside it (like BuildKit's chroot) while the archive's own are
 * never written through, --chown owns every entry, and xattrs are best effort.
 */
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { extractTar, readTar, type ExtractErrors } from "../archive/index.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { filterThrough } from "../process/index.js";
import type { Owner } from "./owner.js";

type Compression = "gzip" | "bzip2" | "xz" | "zstd" | "none";

const DECOMPRESSORS: Record<Exclude<Compression, "gzip" | "none">, string> = {
  bzip2: "bzip2",
  xz: "xz",
  zstd: "zstd",
};

async function sniff(host: string): Promise<Compression> {
  const fh = await open(host, "r");
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(6), 0, 6, 0);
    const b = buffer.subarray(0, bytesRead);
    if (b[0] === 0x1f && b[1] === 0x8b) return "gzip";
    if (b.subarray(0, 3).toString("latin1") === "BZh") return "bzip2";
    if (b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
    if (b.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "zstd";
    return "none";
  } finally {
    await fh.close();
  }
}

function unpackFailed(name: string, detail: string, cause?: unknown): KilnError {
  return new KilnError("E_ADD_UNPACK", `ADD ${name}: ${detail}`, {
    hint: "check that the archive is complete; ADD --unpack=false copies it without extracting",
    cause,
  });
}

async function* decompressed(host: string, name: string): AsyncGenerator<Buffer> {
  const kind = await sniff(host);
  if (kind === "none") {
    yield* createReadStream(host) as AsyncIterable<Buffer>;
  } else if (kind === "gzip") {
    const file = createReadStream(host);
    const gunzip = createGunzip();
    file.on("error", (e) => gunzip.destroy(e));
    try {
      yield* file.pipe(gunzip) as AsyncIterable<Buffer>;
    } finally {
      file.destroy();
      gunzip.destroy();
    }
  } else {
    yield* filterThrough(DECOMPRESSORS[kind], ["-dc"], createReadStream(host), (detail, cause) =>
      unpackFailed(name, detail, cause),
    );
  }
}

/** Whether a regular file is a (possibly compressed) tar archive. */
export async function isArchive(host: string): Promise<boolean> {
  const input = decompressed(host, host);
  try {
    const first = await readTar(input).next();
    return first.done !== true;
  } catch {
    return false;
  } finally {
    await input.return(undefined);
  }
}

/** Errors that name the ADD source. */
function addErrors(name: string): ExtractErrors {
  return {
    unsafe: (entry, why) =>
      new KilnError(
        "E_ADD_UNSAFE",
        `ADD ${name}: refusing entry ${JSON.stringify(entry)}: ${why}`,
        {
          hint: "the archive is hostile or broken; nothing outside the destination was written",
        },
      ),
    failed: (entry, cause) =>
      unpackFailed(
        name,
        `${entry ? `at ${JSON.stringify(entry)}: ` : ""}${messageOf(cause)}`,
        cause,
      ),
  };
}

/**
 * Extracts the archive at `host` into the existing directory `dest`. Entries keep the
 * archive's owners unless `owner` (--chown) is given.
 */
export async function extractArchive(
  host: string,
  dest: string,
  opts: { owner?: Owner; name: string },
): Promise<void> {
  const errors = addErrors(opts.name);
  try {
    await extractTar(decompressed(host, opts.name), dest, {
      whiteouts: "none",
      owner: opts.owner,
      followTargetSymlinks: true,
      bestEffortXattrs: true,
      errors,
    });
  } catch (e) {
    // a broken archive is the ADD source's fault, named as such
    if (isKilnError(e) && e.code === "E_LAYER_INVALID") throw errors.failed("", e);
    throw e;
  }
}
