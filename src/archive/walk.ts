/**
 * Directory → layer tar. One walker serves both an overlayfs upperdir (whiteouts and opaque
 * directories become OCI whiteout entries) and a plain directory. The walk is depth-first in
 * byte order of names, never follows symlinks, and maps inodes seen twice to tar hardlinks.
 */
import { constants } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { getAttribute, listAttributes } from "../xattr.js";
import { KilnError } from "../errors.js";
import type { TarEntry } from "./tar-format.js";
import { packTar, type TarInput } from "./tar-writer.js";

export interface WalkOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it. */
  mtime?: number;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const OVERLAY_XATTR = "trusted.overlay.";

/** An overlayfs upperdir as an OCI layer tar (with whiteouts). */
export function diffUpperDir(upperdir: string, opts: WalkOptions = {}): Readable {
  return packTar(walk(upperdir, opts, true));
}

/** A whole directory as a layer tar (no whiteout semantics). */
export function dirToTar(dir: string, opts: WalkOptions = {}): Readable {
  return packTar(walk(dir, opts, false));
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Linux dev_t → (major, minor), as glibc's gnu_dev_major/minor. */
function splitDev(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

function whiteoutEntry(name: string): TarEntry {
  return { name, type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, xattrs: {} };
}

function unsupportedUpper(path: string, what: string): KilnError {
  return new KilnError(
    "E_LAYER_SOURCE",
    `${path} carries overlayfs ${what}, which a tar diff cannot express`,
    {
      hint: "mount overlay snapshots with redirect_dir=off and metacopy=off",
    },
  );
}

const READ_CHUNK = 1024 * 1024;

/**
 * The first `size` bytes of an open file, read in buffers of exactly the size still needed
 * (a stream would allocate a full chunk per read and copy small files out of it). A file that
 * shrank ends early, which the tar writer reports; growth past `size` is not read.
 */
async function* fileBody(fh: FileHandle, size: number): AsyncGenerator<Buffer> {
  try {
    for (let left = size; left > 0;) {
      const buf = Buffer.allocUnsafeSlow(Math.min(left, READ_CHUNK));
      const { bytesRead } = await fh.read(buf, 0, buf.length, size - left);
      if (bytesRead === 0) return;
      left -= bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

async function* walk(root: string, opts: WalkOptions, overlay: boolean): AsyncGenerator<TarInput> {
  const firstPathOfInode = new Map<string, string>();

  async function* visit(dirRel: string): AsyncGenerator<TarInput> {
    const names = (await readdir(dirRel === "" ? root : join(root, dirRel))).sort(byteOrder);
    for (const name of names) {
      const rel = dirRel === "" ? name : `${dirRel}/${name}`;
      const abs = join(root, rel);
      const st = await lstat(abs, { bigint: true });
      if (st.isSocket()) continue; // sockets cannot be archived, as with tar and Docker
      // Before the hardlink check: the kernel shares one inode among whiteouts (nlink > 1).
      if (overlay && st.isCharacterDevice() && st.rdev === 0n) {
        yield {
          entry: whiteoutEntry(dirRel === "" ? WHITEOUT + name : `${dirRel}/${WHITEOUT}${name}`),
        };
        continue;
      }
      let mtime = Number(st.mtimeNs / 1_000_000_000n);
      if (opts.mtime !== undefined && mtime > opts.mtime) mtime = opts.mtime;
      const entry: TarEntry = {
        name: rel,
        type: "file",
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: 0,
        mtime,
        xattrs: {},
      };
      let opaque = false;
      // Symlinks carry no xattrs here: the xattr binding has no l* calls and would follow them.
      if (!st.isSymbolicLink()) {
        for (const key of (await listAttributes(abs)).sort(byteOrder)) {
          if (key.startsWith(OVERLAY_XATTR)) {
            if (!overlay) continue;
            const rest = key.slice(OVERLAY_XATTR.length);
            if (rest === "redirect") throw unsupportedUpper(abs, "a directory redirect");
            if (rest === "metacopy") throw unsupportedUpper(abs, "a metadata-only copy-up");
            if (rest === "opaque") opaque = (await getAttribute(abs, key))?.toString() === "y";
            continue;
          }
          const value = await getAttribute(abs, key);
          if (value !== null) entry.xattrs[key] = value;
        }
      }

      if (!st.isDirectory() && !st.isSymbolicLink() && st.nlink > 1n) {
        const inode = `${st.dev}:${st.ino}`;
        const first = firstPathOfInode.get(inode);
        if (first !== undefined) {
          yield { entry: { ...entry, type: "hardlink", linkname: first, xattrs: {} } };
          continue;
        }
        firstPathOfInode.set(inode, rel);
      }

      if (st.isDirectory()) {
        yield { entry: { ...entry, name: `${rel}/`, type: "dir" } };
        if (opaque) yield { entry: whiteoutEntry(`${rel}/${OPAQUE}`) };
        yield* visit(rel);
      } else if (st.isFile()) {
        entry.size = Number(st.size);
        const fh = await open(
          abs,
          constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
        );
        if ((await fh.stat({ bigint: true })).ino !== st.ino) {
          await fh.close();
          throw new KilnError("E_LAYER_SOURCE", `${abs} was replaced while it was being archived`, {
            hint: "nothing may write to a directory while it is turned into a layer",
          });
        }
        yield { entry, body: fileBody(fh, entry.size) };
      } else if (st.isSymbolicLink()) {
        yield { entry: { ...entry, type: "symlink", linkname: await readlink(abs) } };
      } else if (st.isFIFO()) {
        yield { entry: { ...entry, type: "fifo" } };
      } else {
        const { major, minor } = splitDev(st.rdev);
        const type = st.isCharacterDevice() ? "char" : "block";
        yield { entry: { ...entry, type, devmajor: major, devminor: minor } };
      }
    }
  }

  yield* visit("");
}
