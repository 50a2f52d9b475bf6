/**
 * Directory → layer tar. One walker serves both an overlayfs upperdir (whiteouts and opaque
 * directories become OCI whiteout entries) and a plain directory; a second one diffs two plain
 * trees (the copy snapshot driver's layers). Walks are depth-first in
 * byte order of names, never follows symlinks, and maps inodes seen twice to tar hardlinks.
 */
import { constants } from "node:fs";
import type { BigIntStats } from "node:fs";
import { lstat, open, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { getAttribute, listAttributes } from "@napi-rs/xattr";
import { KilnError } from "../errors.js";
import { splitDev } from "./nodes.js";
import type { TarEntry } from "./tar-format.js";
import { packTar, type TarInput } from "./tar-writer.js";

export interface WalkOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it. */
  mtime?: number;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const OVERLAY_XATTR = "trusted.overlay.";

/** Which extended attributes (overlayfs' own aside) an entry carries. */
type XattrFilter = (key: string) => boolean;

/**
 * The only extended attribute a built layer carries: containerd's diff writer (which BuildKit
 * exports layers with) records file capabilities and drops user.*, trusted.* and the rest.
 */
const layerXattr: XattrFilter = (key) => key === "security.capability";
const anyXattr: XattrFilter = () => true;

/** An overlayfs upperdir as an OCI layer tar (with whiteouts). */
export function diffUpperDir(upperdir: string, opts: WalkOptions = {}): Readable {
  return packTar(walk(upperdir, opts, true, layerXattr));
}

/**
 * The changes from a plain tree `lower` (undefined: empty) to the plain tree `upper` as a
 * layer tar, as containerd's double walk: what is new or differs (with its parent directories,
 * so modes and owners apply), whiteouts for what is gone. A directory that replaces a lower
 * one keeps the lower children it still has, so no opaque marker is needed.
 */
export function diffTrees(
  lower: string | undefined,
  upper: string,
  opts: WalkOptions = {},
): Readable {
  return packTar(changes(lower, upper, opts));
}

/** A whole directory as a tar (no whiteout semantics), with all its extended attributes. */
export function dirToTar(dir: string, opts: WalkOptions = {}): Readable {
  return packTar(walk(dir, opts, false, anyXattr));
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
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

/** The entry a node becomes (hardlinks aside), and whether overlayfs marks it opaque. */
async function describe(
  abs: string,
  rel: string,
  st: BigIntStats,
  opts: WalkOptions,
  overlay: boolean,
  keepXattr: XattrFilter,
): Promise<{ entry: TarEntry; opaque: boolean }> {
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
      if (!keepXattr(key)) continue;
      const value = await getAttribute(abs, key);
      if (value !== null) entry.xattrs[key] = value;
    }
  }
  if (st.isDirectory()) {
    entry.name = `${rel}/`;
    entry.type = "dir";
  } else if (st.isFile()) {
    entry.size = Number(st.size);
  } else if (st.isSymbolicLink()) {
    entry.type = "symlink";
    entry.linkname = await readlink(abs);
  } else if (st.isFIFO()) {
    entry.type = "fifo";
  } else {
    const { major, minor } = splitDev(st.rdev);
    entry.type = st.isCharacterDevice() ? "char" : "block";
    entry.devmajor = major;
    entry.devminor = minor;
  }
  return { entry, opaque };
}

/** A regular file's contents, opened without following a symlink swapped in meanwhile. */
async function fileBody(abs: string, st: BigIntStats): Promise<Readable> {
  const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  if ((await fh.stat({ bigint: true })).ino !== st.ino) {
    await fh.close();
    throw new KilnError("E_LAYER_SOURCE", `${abs} was replaced while it was being archived`, {
      hint: "nothing may write to a directory while it is turned into a layer",
    });
  }
  return fh.createReadStream({ highWaterMark: 1024 * 1024 });
}

/** Inodes seen twice become tar hardlinks to the first path written. */
class Hardlinks {
  private readonly firstPath = new Map<string, string>();

  /** The hardlink entry for a node already written, or undefined (and the node is recorded). */
  linkFor(entry: TarEntry, st: BigIntStats): TarEntry | undefined {
    if (st.isDirectory() || st.isSymbolicLink() || st.nlink <= 1n) return undefined;
    const inode = `${st.dev}:${st.ino}`;
    const first = this.firstPath.get(inode);
    if (first !== undefined)
      return { ...entry, type: "hardlink", linkname: first, size: 0, xattrs: {} };
    this.firstPath.set(inode, entry.name);
    return undefined;
  }
}

async function* walk(
  root: string,
  opts: WalkOptions,
  overlay: boolean,
  keepXattr: XattrFilter,
): AsyncGenerator<TarInput> {
  const hardlinks = new Hardlinks();

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
      const { entry, opaque } = await describe(abs, rel, st, opts, overlay, keepXattr);
      const link = hardlinks.linkFor(entry, st);
      if (link) {
        yield { entry: link };
      } else if (st.isDirectory()) {
        yield { entry };
        if (opaque) yield { entry: whiteoutEntry(`${rel}/${OPAQUE}`) };
        yield* visit(rel);
      } else {
        yield { entry, body: st.isFile() ? await fileBody(abs, st) : undefined };
      }
    }
  }

  yield* visit("");
}

async function lstatOrNull(p: string): Promise<BigIntStats | null> {
  try {
    return await lstat(p, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** Whether two regular files of equal size hold the same bytes. */
async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, "r"), open(b, "r")]);
  try {
    const [ba, bb] = [Buffer.alloc(256 * 1024), Buffer.alloc(256 * 1024)];
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length), fb.read(bb, 0, bb.length)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/**
 * Whether a node is unchanged from its counterpart in the lower tree: same type, mode, owner,
 * mtime (ns), size, link target, device and xattrs. When the mtime has no sub-second part
 * (extracted from a tar, or a coarse filesystem) equal files are also compared byte for byte,
 * as containerd's diff does, since a same-second rewrite would otherwise go unseen.
 */
async function unchanged(
  up: { abs: string; st: BigIntStats; entry: TarEntry },
  low: { abs: string; st: BigIntStats; entry: TarEntry },
): Promise<boolean> {
  const [a, b] = [up.entry, low.entry];
  if (
    up.st.mode !== low.st.mode ||
    up.st.uid !== low.st.uid ||
    up.st.gid !== low.st.gid ||
    up.st.mtimeNs !== low.st.mtimeNs ||
    a.size !== b.size ||
    a.linkname !== b.linkname ||
    a.devmajor !== b.devmajor ||
    a.devminor !== b.devminor
  )
    return false;
  const keys = Object.keys(a.xattrs);
  if (keys.length !== Object.keys(b.xattrs).length) return false;
  if (keys.some((k) => !b.xattrs[k]?.equals(a.xattrs[k]!))) return false;
  if (up.st.isFile() && up.st.mtimeNs % 1_000_000_000n === 0n) return sameContent(up.abs, low.abs);
  return true;
}

async function* changes(
  lower: string | undefined,
  upper: string,
  opts: WalkOptions,
): AsyncGenerator<TarInput> {
  const hardlinks = new Hardlinks();
  /** Directories already written: a change's parents are written once, before it. */
  const written = new Set<string>([""]);
  const dirEntries = new Map<string, TarEntry>();

  function* parentsOf(dirRel: string): Generator<TarInput> {
    const parts = dirRel === "" ? [] : dirRel.split("/");
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (written.has(d)) continue;
      written.add(d);
      yield { entry: dirEntries.get(d)! };
    }
  }

  async function* visit(dirRel: string, lowerExists: boolean): AsyncGenerator<TarInput> {
    const upNames = (await readdir(dirRel === "" ? upper : join(upper, dirRel))).sort(byteOrder);
    const lowNames =
      lower !== undefined && lowerExists
        ? (await readdir(dirRel === "" ? lower : join(lower, dirRel))).sort(byteOrder)
        : [];
    const upSet = new Set(upNames);
    // deleted: whiteouts first, in name order (applying them never touches what follows)
    for (const name of lowNames) {
      if (upSet.has(name)) continue;
      yield* parentsOf(dirRel);
      yield {
        entry: whiteoutEntry(dirRel === "" ? WHITEOUT + name : `${dirRel}/${WHITEOUT}${name}`),
      };
    }
    const lowSet = new Set(lowNames);
    for (const name of upNames) {
      const rel = dirRel === "" ? name : `${dirRel}/${name}`;
      const abs = join(upper, rel);
      const st = await lstat(abs, { bigint: true });
      if (st.isSocket()) continue;
      const { entry } = await describe(abs, rel, st, opts, false, layerXattr);
      const lowAbs = lower !== undefined && lowSet.has(name) ? join(lower, rel) : undefined;
      const lowSt = lowAbs === undefined ? null : await lstatOrNull(lowAbs);
      const same =
        lowAbs !== undefined &&
        lowSt !== null &&
        (await unchanged(
          { abs, st, entry },
          {
            abs: lowAbs,
            st: lowSt,
            entry: (await describe(lowAbs, rel, lowSt, opts, false, layerXattr)).entry,
          },
        ));
      if (st.isDirectory()) {
        dirEntries.set(rel, entry);
        if (!same) {
          yield* parentsOf(dirRel);
          written.add(rel);
          yield { entry };
        }
        yield* visit(rel, lowSt?.isDirectory() === true);
        continue;
      }
      if (same) continue;
      yield* parentsOf(dirRel);
      const link = hardlinks.linkFor(entry, st);
      if (link) yield { entry: link };
      else yield { entry, body: st.isFile() ? await fileBody(abs, st) : undefined };
    }
  }

  yield* visit("", true);
}
