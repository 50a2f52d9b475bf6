/**
 * Directory → layer tar. One walker serves an overlayfs upperdir (whiteouts and opaque
 * directories become OCI whiteout entries), a plain directory, and a plain tree compared with
 * the plain tree it was made from (the copy snapshot driver's layers). The walk is depth-first
 * in byte order of names, never follows symlinks, and maps inodes seen twice to tar hardlinks.
 */
// Metadata calls (lstat, readdir, readlink) are synchronous: each takes microseconds, while an
// awaited one is a thread-pool round trip, and a walk makes one per entry. File bodies are
// read asynchronously.
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  type BigIntStats,
} from "node:fs";
import { open } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { getAttribute, listAttributes } from "../xattr.js";
import { KilnError } from "../errors.js";
import { isWhiteout, OverlayLowers, type LowerEntry } from "./lower.js";
import { splitDev } from "./nodes.js";
import { encodeHeader, type TarEntry } from "./tar-format.js";
import { encodeTar, type TarInput } from "./tar-writer.js";

export interface WalkOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it. */
  mtime?: number;
  /**
   * diffUpperDir: the lowerdirs below the upperdir, top-most first. With them the diff follows
   * BuildKit's overlay differ: entries the step left as they were are left out (directories
   * come back in front of a change inside), whiteouts of nothing are dropped, and an opaque
   * directory becomes a whiteout per name that went away.
   */
  lowers?: readonly string[];
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

/** How the walked root relates to what is below it. */
type WalkMode = "upperdir" | "plain" | "plain-over-lower";

/** An overlayfs upperdir as an OCI layer tar (with whiteouts). */
export function diffUpperDir(upperdir: string, opts: WalkOptions = {}): AsyncGenerator<Buffer> {
  return encodeTar(walk(upperdir, opts, "upperdir", layerXattr));
}

/**
 * The changes from a plain tree `lower` (undefined: empty) to the plain tree `upper` as a
 * layer tar, by the same rules as an upperdir with lowers: what is new or differs (unchanged
 * parent directories written in front of a change), a whiteout for each name that went away.
 */
export function diffTrees(
  lower: string | undefined,
  upper: string,
  opts: WalkOptions = {},
): AsyncGenerator<Buffer> {
  return diffOf({ kind: "trees", lower, upper }, opts);
}

/**
 * Where a layer's changes are: an overlayfs upperdir over its lowerdirs (top-most first), or a
 * plain tree over the plain tree it was made from (none: the whole tree).
 */
export type LayerDiff =
  | { kind: "upperdir"; upperdir: string; lowers: readonly string[] }
  | { kind: "trees"; lower: string | undefined; upper: string };

/**
 * What a walk gives each file: its contents in buffers of its own ("own"), in one buffer reused
 * for every read ("shared": valid only until the next chunk is asked for, for a consumer that
 * hashes or copies it at once), or no contents ("none").
 */
type Bodies = "own" | "shared" | "none";

function diffEntries(diff: LayerDiff, opts: WalkOptions, bodies: Bodies) {
  if (diff.kind === "upperdir") {
    return walk(diff.upperdir, { ...opts, lowers: diff.lowers }, "upperdir", layerXattr, bodies);
  }
  return diff.lower === undefined
    ? walk(diff.upper, opts, "plain", layerXattr, bodies)
    : walk(diff.upper, { ...opts, lowers: [diff.lower] }, "plain-over-lower", layerXattr, bodies);
}

/**
 * The layer tar of a LayerDiff (as diffUpperDir or diffTrees make it). With `transient`, file
 * contents come through one buffer reused for every read: each chunk is valid only until the
 * next is asked for (for a consumer that hashes or copies it at once).
 */
export function diffOf(
  diff: LayerDiff,
  opts: WalkOptions = {},
  transient = false,
): AsyncGenerator<Buffer> {
  return encodeTar(diffEntries(diff, opts, transient ? "shared" : "own"));
}

/**
 * The digest and size of the tar diffOf gives, its files read through one reused buffer: fresh
 * memory per file costs page faults here (a 1 GiB layer's contents hashed in ~1 s rather than
 * ~3 s).
 */
export async function diffDigest(
  diff: LayerDiff,
  opts: WalkOptions = {},
): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  // each chunk is hashed before the next is read into the same buffer
  for await (const c of encodeTar(diffEntries(diff, opts, "shared"))) {
    h.update(c);
    size += c.length;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

/**
 * The digest of a layer's tar headers alone (names, types, modes, owners, sizes, times, links,
 * extended attributes), read without opening a file: layers whose signatures differ differ;
 * equal signatures say nothing about the contents.
 */
export async function diffSignature(diff: LayerDiff, opts: WalkOptions = {}): Promise<string> {
  const h = createHash("sha256");
  for await (const { entry } of diffEntries(diff, opts, "none")) h.update(encodeHeader(entry));
  return `sha256:${h.digest("hex")}`;
}

/** A whole directory as a tar (no whiteout semantics), with all its extended attributes. */
export function dirToTar(dir: string, opts: WalkOptions = {}): AsyncGenerator<Buffer> {
  return encodeTar(walk(dir, opts, "plain", (key) => !key.startsWith(OVERLAY_XATTR)));
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

const READ_CHUNK = 1024 * 1024;

/**
 * The first `size` bytes of an open file, read in buffers of exactly the size still needed
 * (a stream would allocate a full chunk per read and copy small files out of it), or into
 * `shared` (each chunk then valid until the next is asked for). A file that
 * shrank ends early, which the tar writer reports; growth past `size` is not read. Reads are
 * synchronous: a layer is mostly small files, for which a thread-pool round trip per call costs
 * more than the read.
 */
function* fileBody(fd: number, size: number, shared: Buffer | undefined): Generator<Buffer> {
  try {
    for (let left = size; left > 0;) {
      const buf =
        shared === undefined
          ? Buffer.allocUnsafeSlow(Math.min(left, READ_CHUNK))
          : shared.subarray(0, Math.min(left, shared.length));
      const bytesRead = readSync(fd, buf, 0, buf.length, size - left);
      if (bytesRead === 0) return;
      left -= bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    closeSync(fd);
  }
}

async function* walk(
  root: string,
  opts: WalkOptions,
  mode: WalkMode,
  keepXattr: XattrFilter,
  bodies: Bodies = "own",
): AsyncGenerator<TarInput> {
  const shared = bodies === "shared" ? Buffer.allocUnsafeSlow(READ_CHUNK) : undefined;
  const overlay = mode === "upperdir";
  const firstPathOfInode = new Map<string, string>();
  const lowers =
    (overlay || mode === "plain-over-lower") && opts.lowers
      ? new OverlayLowers(opts.lowers)
      : undefined;
  // Directories the step left as they were below: written only in front of something changed
  // inside them (containerd's includeParents), else left out of the layer.
  const pending: { rel: string; entry: TarEntry }[] = [];
  function* flush(): Generator<TarInput> {
    for (const p of pending) yield { entry: p.entry };
    pending.length = 0;
  }

  function describe(rel: string, abs: string, st: BigIntStats) {
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
      for (const key of listAttributes(abs).sort(byteOrder)) {
        if (overlay && key.startsWith(OVERLAY_XATTR)) {
          const rest = key.slice(OVERLAY_XATTR.length);
          if (rest === "redirect") throw unsupportedUpper(abs, "a directory redirect");
          if (rest === "metacopy") throw unsupportedUpper(abs, "a metadata-only copy-up");
          if (rest === "opaque") opaque = getAttribute(abs, key)?.toString() === "y";
          continue;
        }
        if (!keepXattr(key)) continue;
        const value = getAttribute(abs, key);
        if (value !== null) entry.xattrs[key] = value;
      }
    }
    return { entry, opaque };
  }

  async function* visit(dirRel: string, inLower: boolean): AsyncGenerator<TarInput> {
    const names = readdirSync(dirRel === "" ? root : join(root, dirRel)).sort(byteOrder);
    for (const name of names) {
      const rel = dirRel === "" ? name : `${dirRel}/${name}`;
      const abs = join(root, rel);
      const st = lstatSync(abs, { bigint: true });
      if (st.isSocket()) continue; // sockets cannot be archived, as with tar and Docker
      // Before the hardlink check: the kernel shares one inode among whiteouts (nlink > 1).
      if (overlay && isWhiteout(st)) {
        // a whiteout of nothing the layers below have is left out, as BuildKit's differ does
        if (lowers && !(inLower && (await lowers.lookup(rel)))) continue;
        yield* flush();
        yield {
          entry: whiteoutEntry(dirRel === "" ? WHITEOUT + name : `${dirRel}/${WHITEOUT}${name}`),
        };
        continue;
      }
      const base = lowers && inLower ? await lowers.lookup(rel) : undefined;
      yield* node(rel, abs, st, base, false);
    }
  }

  /**
   * Inside an opaque directory the upperdir holds the whole view (as a plain tree does
   * everywhere): compare it with the lower view name by name, writing a whiteout for each name
   * that went away (no opaque marker), as BuildKit's overlay differ does.
   */
  async function* viewDiff(dirRel: string): AsyncGenerator<TarInput> {
    const below = await lowers!.list(dirRel);
    const here = new Set(readdirSync(dirRel === "" ? root : join(root, dirRel)));
    for (const name of [...new Set([...below, ...here])].sort(byteOrder)) {
      const rel = dirRel === "" ? name : `${dirRel}/${name}`;
      if (!here.has(name)) {
        yield* flush();
        yield {
          entry: whiteoutEntry(dirRel === "" ? WHITEOUT + name : `${dirRel}/${WHITEOUT}${name}`),
        };
        continue;
      }
      const abs = join(root, rel);
      const st = lstatSync(abs, { bigint: true });
      if (st.isSocket() || (overlay && isWhiteout(st))) continue;
      const base = below.has(name) ? await lowers!.lookup(rel) : undefined;
      yield* node(rel, abs, st, base, true);
    }
  }

  async function* node(
    rel: string,
    abs: string,
    st: BigIntStats,
    base: LowerEntry | undefined,
    inView: boolean,
  ): AsyncGenerator<TarInput> {
    const { entry, opaque } = describe(rel, abs, st);
    const unchanged = base !== undefined && (await sameDirent(base, abs, st));

    if (!st.isDirectory() && !st.isSymbolicLink() && st.nlink > 1n) {
      const inode = `${st.dev}:${st.ino}`;
      const first = firstPathOfInode.get(inode);
      if (first !== undefined) {
        yield* flush();
        yield { entry: { ...entry, type: "hardlink", linkname: first, xattrs: {} } };
        return;
      }
      if (!unchanged) firstPathOfInode.set(inode, rel);
    }

    if (st.isDirectory()) {
      const dirEntry: TarEntry = { ...entry, name: `${rel}/`, type: "dir" };
      if (unchanged) pending.push({ rel, entry: dirEntry });
      else {
        yield* flush();
        yield { entry: dirEntry };
      }
      const baseIsDir = base?.st.isDirectory() ?? false;
      if (lowers && baseIsDir && (opaque || inView)) yield* viewDiff(rel);
      else {
        if (opaque && !lowers) yield { entry: whiteoutEntry(`${rel}/${OPAQUE}`) };
        yield* visit(rel, baseIsDir);
      }
      if (pending.at(-1)?.rel === rel) pending.pop();
      return;
    }
    if (unchanged) return;
    yield* flush();
    if (st.isFile()) {
      entry.size = Number(st.size);
      if (bodies === "none") {
        yield { entry };
        return;
      }
      const fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      if (fstatSync(fd, { bigint: true }).ino !== st.ino) {
        closeSync(fd);
        throw new KilnError("E_LAYER_SOURCE", `${abs} was replaced while it was being archived`, {
          hint: "nothing may write to a directory while it is turned into a layer",
        });
      }
      yield { entry, body: fileBody(fd, entry.size, shared) };
    } else if (st.isSymbolicLink()) {
      yield { entry: { ...entry, type: "symlink", linkname: readlinkSync(abs) } };
    } else if (st.isFIFO()) {
      yield { entry: { ...entry, type: "fifo" } };
    } else {
      const { major, minor } = splitDev(st.rdev);
      const type = st.isCharacterDevice() ? "char" : "block";
      yield { entry: { ...entry, type, devmajor: major, devminor: minor } };
    }
  }

  if (mode === "plain-over-lower") yield* viewDiff("");
  else yield* visit("", true);
}

/**
 * Whether an upperdir entry is what the lower view already has, by BuildKit's overlay differ
 * (sameDirent): same type, mode, owner, device and capabilities; for non-directories also the
 * size and mtime, and when both mtimes are whole seconds (as unpacked from a tar) the content.
 */
async function sameDirent(base: LowerEntry, abs: string, st: BigIntStats): Promise<boolean> {
  const b = base.st;
  if (b.mode !== st.mode || b.uid !== st.uid || b.gid !== st.gid || b.rdev !== st.rdev)
    return false;
  if (!st.isSymbolicLink()) {
    const [x, y] = [capability(base.abs), capability(abs)];
    if (!(x === undefined ? y === undefined : y !== undefined && x.equals(y))) return false;
  }
  if (st.isDirectory()) return true;
  if (b.size !== st.size) return false;
  const billion = 1_000_000_000n;
  if (b.mtimeNs / billion !== st.mtimeNs / billion) return false;
  if (b.mtimeNs % billion !== 0n || st.mtimeNs % billion !== 0n)
    return b.mtimeNs % billion === st.mtimeNs % billion;
  if (st.isSymbolicLink()) return readlinkSync(base.abs) === readlinkSync(abs);
  if (st.size === 0n || !st.isFile()) return true;
  return sameContent(base.abs, abs);
}

function capability(abs: string): Buffer | undefined {
  try {
    return getAttribute(abs, "security.capability") ?? undefined;
  } catch {
    return undefined;
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, "r"), open(b, "r")]);
  try {
    const ba = Buffer.alloc(64 * 1024);
    const bb = Buffer.alloc(64 * 1024);
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
