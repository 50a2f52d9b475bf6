/**
 * ADD's local archive extraction. A source is an archive when, after decompression (gzip,
 * bzip2, xz or zstd, recognised by magic bytes, never by name), it starts with a valid tar
 * header: the test BuildKit applies. Extraction never writes outside the destination: entry
 * names that climb out with `..` are refused, every parent is resolved inside the destination
 * (like BuildKit's chroot), writing through a symlink the archive itself planted is refused,
 * and files are created with O_EXCL|O_NOFOLLOW after whatever was there is removed.
 */
import { constants, createReadStream, type Stats } from "node:fs";
import {
  chmod,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  rm,
  symlink,
  utimes,
} from "node:fs/promises";
import { join, posix, relative } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { setAttribute } from "../xattr.js";
import { readTar, type TarEntry } from "../archive/index.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { filterThrough, runChecked } from "../process/index.js";
import type { Owner } from "./owner.js";
import { resolveInRoot } from "../rootpath/index.js";

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

function entryPath(name: string, what: string): string {
  if (name.includes("\0")) throw new KilnError("E_ADD_UNSAFE", `${what}: name contains a NUL byte`);
  // "./" (GNU tar's root entry) normalizes to "./": strip the slash before testing for the root
  const clean = posix.normalize(name.replace(/^\/+/, "")).replace(/\/$/, "");
  if (clean === ".." || clean.startsWith("../")) {
    throw new KilnError(
      "E_ADD_UNSAFE",
      `${what}: ${JSON.stringify(name)} points outside the destination`,
      {
        hint: "the archive is hostile or broken; nothing outside the destination was written",
      },
    );
  }
  return clean === "." ? "" : clean;
}

class Extractor {
  /** Symlinks this archive created: writing through them is refused. */
  private readonly planted = new Set<string>();
  private readonly dirTimes: { host: string; mtime: number }[] = [];

  constructor(
    private readonly dest: string,
    private readonly name: string,
    private readonly owner: Owner | undefined,
  ) {}

  private unsafe(entry: string, why: string): KilnError {
    return new KilnError(
      "E_ADD_UNSAFE",
      `ADD ${this.name}: entry ${JSON.stringify(entry)} ${why}`,
      {
        hint: "the archive is hostile or broken; nothing outside the destination was written",
      },
    );
  }

  /** The host directory holding `rel`, created (0755) where missing when `create`. */
  private async parentOf(rel: string, entry: string, create: boolean): Promise<string> {
    let cur = this.dest;
    for (const part of rel.split("/").slice(0, -1)) {
      const next = join(cur, part);
      const st = await lstat(next).catch(() => undefined);
      if (!st) {
        if (!create) throw this.unsafe(entry, `names a missing directory ${part}`);
        await mkdir(next, { mode: 0o755 });
        cur = next;
      } else if (st.isDirectory()) {
        cur = next;
      } else if (st.isSymbolicLink()) {
        if (this.planted.has(next))
          throw this.unsafe(
            entry,
            `writes through the archive's own symlink ${relative(this.dest, next)}`,
          );
        // a symlink already in the destination is followed, confined to it
        cur = await resolveInRoot(this.dest, relative(this.dest, next), { followFinal: true });
        const target = await lstat(cur).catch(() => undefined);
        if (!target?.isDirectory())
          throw this.unsafe(entry, `has a parent that is not a directory`);
      } else {
        throw this.unsafe(entry, `has a parent that is not a directory`);
      }
    }
    return cur;
  }

  private async finish(host: string, e: TarEntry, isLink: boolean): Promise<void> {
    const o = this.owner ?? { uid: e.uid, gid: e.gid };
    await lchown(host, o.uid, o.gid);
    if (isLink) {
      await lutimes(host, e.mtime, e.mtime);
      return;
    }
    await chmod(host, e.mode & 0o7777);
    for (const [key, value] of Object.entries(e.xattrs)) {
      if (key.startsWith("trusted.overlay.")) continue; // never smuggle overlayfs metadata
      await setAttribute(host, key, value).catch(() => undefined); // best effort, as BuildKit
    }
    if (e.type === "dir") this.dirTimes.push({ host, mtime: e.mtime });
    else await utimes(host, e.mtime, e.mtime);
  }

  async entry(e: TarEntry, body: Readable): Promise<void> {
    const rel = entryPath(e.name, `ADD ${this.name}: entry`);
    if (rel === "") return; // the archive's root is the destination itself
    const parent = await this.parentOf(rel, e.name, true);
    const host = join(parent, posix.basename(rel));
    const existing: Stats | undefined = await lstat(host).catch(() => undefined);
    if (existing && !(existing.isDirectory() && e.type === "dir")) {
      await rm(host, { recursive: true, force: true });
      this.planted.delete(host);
    }
    switch (e.type) {
      case "dir":
        if (!existing?.isDirectory()) await mkdir(host, { mode: 0o700 });
        break;
      case "file": {
        const fh = await open(
          host,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of body) await fh.write(chunk as Buffer);
        } finally {
          await fh.close();
        }
        break;
      }
      case "symlink":
        await symlink(e.linkname ?? "", host);
        this.planted.add(host);
        break;
      case "hardlink": {
        const targetRel = entryPath(
          e.linkname ?? "",
          `ADD ${this.name}: hardlink ${JSON.stringify(e.name)}`,
        );
        if (targetRel === "") throw this.unsafe(e.name, "links to the destination directory");
        const targetParent = await this.parentOf(targetRel, e.name, false);
        await link(join(targetParent, posix.basename(targetRel)), host);
        return; // a hardlink shares its target's metadata
      }
      case "fifo":
      case "char":
      case "block": {
        const args =
          e.type === "fifo"
            ? [host, "p"]
            : [
                host,
                e.type === "char" ? "c" : "b",
                String(e.devmajor ?? 0),
                String(e.devminor ?? 0),
              ];
        await runChecked("mknod", args, { errorCode: "E_ADD_UNPACK" });
        break;
      }
    }
    await this.finish(host, e, e.type === "symlink");
  }

  /** Directory times last: extracting their children changed them. */
  async done(): Promise<void> {
    for (const { host, mtime } of this.dirTimes.reverse()) await utimes(host, mtime, mtime);
  }
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
  const x = new Extractor(dest, opts.name, opts.owner);
  let current = "";
  try {
    for await (const { entry, body } of readTar(decompressed(host, opts.name))) {
      current = entry.name;
      await x.entry(entry, body);
    }
    await x.done();
  } catch (e) {
    if (isKilnError(e) && e.code !== "E_LAYER_INVALID") throw e;
    throw unpackFailed(
      opts.name,
      `${current ? `at ${JSON.stringify(current)}: ` : ""}${messageOf(e)}`,
      e,
    );
  }
}
