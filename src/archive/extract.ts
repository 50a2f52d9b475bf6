/**
 * The one tar extractor: layer apply (snapshots) and ADD of a local archive (fileops) both
 * use it; their real differences (whiteouts, owners, symlinks already in the target, xattr
 * strictness, error codes) are options.
 *
 * Safety model — every operation on a path, deferred ones included, is resolved at the moment
 * it happens and never goes through a symlink outside the caller's rules:
 * - names are cleaned lexically (leading "/" stripped, "." dropped, ".." popped) and a name
 *   that climbs above the root is refused, so every name is inside the root;
 * - each parent component is lstat'ed and must be a real directory. A symlink the archive
 *   made is never followed; one that was in the target before (ADD into an image's tree) is
 *   followed only with `followTargetSymlinks`, resolved inside the root as a chroot would
 *   (rootpath/), and the walk continues from the real directory it names;
 * - the final component is removed and re-created (files with O_EXCL|O_NOFOLLOW), owners are
 *   set with lchown and metadata of regular files and directories through an open descriptor;
 *   in a directory this extraction made (or a root that started empty) a name it has not used
 *   yet is known to be free and is not looked up;
 * - directory mode and mtime are applied after the last entry (children change the mtime and a
 *   read-only mode would block them). At that moment the directory's path is walked again from
 *   the root: a component that a later entry replaced with a symlink makes the archive refused
 *   (the metadata would land wherever the link points — BuildKit refuses such a layer too), one
 *   replaced with a non-directory means the directory is gone and its metadata is moot;
 * - hardlink targets and whiteout victims go through the same resolution.
 * Verified directories are cached and the cache is dropped whenever this extraction removes a
 * directory; the extraction is sequential, so nothing of ours races the checks (the target must
 * not be in use by anything else while it is being filled).
 */
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeSync,
  type Stats,
} from "node:fs";
import { opendir, realpath } from "node:fs/promises";
import { join, posix, relative } from "node:path";
import type { Readable } from "node:stream";
import { setAttribute } from "../xattr.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { resolveInRoot } from "../rootpath/index.js";
import { unsafeLayer } from "./errors.js";
import { makeNodes, type SpecialNode } from "./nodes.js";
import type { TarEntry } from "./tar-format.js";
import { readTar } from "./tar-reader.js";

/** Errors in the caller's terms (a layer, an ADD source). */
export interface ExtractErrors {
  /** The archive would touch something outside the root, or is not permitted here. */
  unsafe(entry: string, why: string): KilnError;
  /** An I/O failure at an entry ("" once all entries were read). */
  failed(entry: string, cause: unknown): KilnError;
}

export interface ExtractOptions {
  /**
   * "overlay": the target is one overlayfs layer; OCI whiteouts become overlay whiteouts
   * (char device 0:0, trusted.overlay.opaque=y). "delete": the target is a flattened tree;
   * whiteouts delete what lower layers put there. "none": `.wh.` names are ordinary files
   * (ADD, as Docker).
   */
  whiteouts: "overlay" | "delete" | "none";
  /** Create char/block device nodes (default: only when running as root). */
  allowDevices?: boolean;
  /** Apply the archive's uid/gid (default: only when running as root). */
  sameOwner?: boolean;
  /** One owner for every entry (ADD --chown); wins over sameOwner. */
  owner?: { uid: number; gid: number };
  /**
   * Follow symlinks that were in the target before extraction when they are parents of an
   * entry, resolved inside the root (ADD into an image tree, as BuildKit's chroot). Default:
   * every symlink parent is refused (a layer only ever builds on its own directories).
   */
  followTargetSymlinks?: boolean;
  /** Skip any extended attribute the filesystem refuses (ADD, as BuildKit). */
  bestEffortXattrs?: boolean;
  errors: ExtractErrors;
}

/** Layer apply: the options a snapshot chooses; errors are the layer's. */
export interface ApplyOptions {
  whiteouts: "overlay" | "delete";
  allowDevices?: boolean;
  sameOwner?: boolean;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

const LAYER_ERRORS: ExtractErrors = {
  unsafe: unsafeLayer,
  failed: (entry, cause) =>
    new KilnError("E_LAYER_APPLY", `extracting ${JSON.stringify(entry)}: ${messageOf(cause)}`, {
      hint: "check free space and that the snapshot directory is writable (device nodes and whiteouts need root)",
      cause,
    }),
};

function lstatOrNull(p: string): Stats | null {
  try {
    // ENOENT (most entries of a layer, unpacked into an empty dir) without an exception
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw e;
  }
}

async function isEmptyDir(dir: string): Promise<boolean> {
  const d = await opendir(dir);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close();
  }
}

function join2(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

/** Path inside the root of an archive name: "" for the root itself. Climbing out is refused. */
function cleanName(name: string, entry: string, errors: ExtractErrors): string {
  if (name.includes("\0"))
    throw errors.unsafe(entry, `${JSON.stringify(name)} contains a NUL byte`);
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p !== "..") parts.push(p);
    else if (parts.pop() === undefined)
      throw errors.unsafe(entry, `${JSON.stringify(name)} points outside the root with '..'`);
  }
  return parts.join("/");
}

class Extractor {
  /** Paths (relative to the root, symlink-free) known to be real directories. */
  private readonly safeDirs = new Set<string>([""]);
  /** Paths this archive created: whiteouts in the same layer never hide them. */
  private readonly created = new Set<string>();
  /**
   * Directories that held nothing when this archive made them (the root too, when it started
   * empty): a name in one that is not in `created` is free without asking the filesystem. An
   * lstat per entry was a fifth of unpacking a layer of many small files.
   */
  private readonly fresh = new Set<string>();
  /** Symlinks this archive made: never followed. */
  private readonly planted = new Set<string>();
  /** Target symlinks already followed → the real directory each names (followTargetSymlinks). */
  private readonly followed = new Map<string, string>();
  private readonly dirMeta: { rel: string; name: string; entry: TarEntry }[] = [];
  private readonly pendingWhiteouts: { rel: string; name: string }[] = [];
  private readonly isRoot = process.getuid?.() === 0;
  private readonly allowDevices: boolean;
  private readonly sameOwner: boolean;
  private readonly errors: ExtractErrors;

  constructor(
    private readonly root: string,
    private readonly opts: ExtractOptions,
    emptyRoot: boolean,
  ) {
    this.allowDevices = opts.allowDevices ?? this.isRoot;
    this.sameOwner = opts.sameOwner ?? this.isRoot;
    this.errors = opts.errors;
    if (emptyRoot) this.fresh.add("");
  }

  private abs(rel: string): string {
    return rel === "" ? this.root : join(this.root, rel);
  }

  /**
   * The real directory named by `parts` (relative to the root, symlink-free), checking each
   * component; with `create`, missing ones are made (0755). Null when one is missing and
   * create is off.
   */
  private async dirOf(
    parts: readonly string[],
    name: string,
    create: boolean,
  ): Promise<string | null> {
    let cur = "";
    for (const part of parts) {
      const next = join2(cur, part);
      if (this.safeDirs.has(next)) {
        cur = next;
        continue;
      }
      const st = lstatOrNull(this.abs(next));
      if (st === null) {
        if (!create) return null;
        mkdirSync(this.abs(next), { mode: 0o755 });
        this.created.add(next);
        this.fresh.add(next);
      } else if (st.isSymbolicLink()) {
        cur = await this.throughSymlink(next, name, create);
        continue;
      } else if (!st.isDirectory()) {
        throw this.errors.unsafe(name, `parent ${JSON.stringify(next)} is not a directory`);
      }
      this.safeDirs.add(next);
      cur = next;
    }
    return cur;
  }

  /** A symlink where a parent directory should be: refused, or resolved inside the root. */
  private async throughSymlink(rel: string, name: string, create: boolean): Promise<string> {
    const known = this.followed.get(rel);
    if (known !== undefined) return known;
    if (this.planted.has(rel))
      throw this.errors.unsafe(
        name,
        `it writes through the archive's own symlink ${JSON.stringify(rel)}`,
      );
    if (!this.opts.followTargetSymlinks)
      throw this.errors.unsafe(name, `parent ${JSON.stringify(rel)} is a symlink`);
    const through: string[] = [];
    const host = await resolveInRoot(this.root, rel, {
      followFinal: true,
      onSymlink: (link) => through.push(relative(this.root, link)),
    });
    const own = through.find((link) => this.planted.has(link));
    if (own !== undefined)
      throw this.errors.unsafe(
        name,
        `it writes through the archive's own symlink ${JSON.stringify(own)}`,
      );
    const target = relative(this.root, host);
    // resolveInRoot left no symlink in target; walking it again checks and caches each part
    const dir = await this.dirOf(target === "" ? [] : target.split("/"), name, create);
    if (dir === null || !lstatOrNull(this.abs(dir))?.isDirectory())
      throw this.errors.unsafe(name, `parent ${JSON.stringify(rel)} is a symlink to no directory`);
    this.followed.set(rel, dir);
    return dir;
  }

  /** Whether nothing is at `at` (a located path) for certain, without looking. */
  private isFree(at: string): boolean {
    if (this.created.has(at)) return false;
    const slash = at.lastIndexOf("/");
    return this.fresh.has(slash < 0 ? "" : at.slice(0, slash));
  }

  /** Where entry `rel` lives (relative to the root, symlink-free parents); null as dirOf. */
  private async locate(rel: string, name: string, create: boolean): Promise<string | null> {
    const parts = rel.split("/");
    const base = parts.pop()!;
    const dir = await this.dirOf(parts, name, create);
    return dir === null ? null : join2(dir, base);
  }

  /** Remove whatever is at rel (recursively for directories; rm never follows symlinks). */
  private remove(rel: string, st: Stats): void {
    if (st.isDirectory()) {
      rmSync(this.abs(rel), { recursive: true, force: true });
      for (const dirs of [this.safeDirs, this.fresh])
        for (const d of dirs) if (d === rel || d.startsWith(`${rel}/`)) dirs.delete(d);
    } else {
      rmSync(this.abs(rel), { force: true });
    }
    this.planted.delete(rel);
    // a removed directory or link may be what a followed symlink led to
    if (!st.isFile()) this.followed.clear();
  }

  private ownerOf(entry: TarEntry): { uid: number; gid: number } | undefined {
    return this.opts.owner ?? (this.sameOwner ? { uid: entry.uid, gid: entry.gid } : undefined);
  }

  /** Only ever called on a node this extraction just created or verified (never a symlink). */
  private setXattrs(p: string, entry: TarEntry): void {
    for (const [key, value] of Object.entries(entry.xattrs)) {
      // An archive must not smuggle in overlayfs metadata (opaque/redirect/metacopy).
      if (key.startsWith("trusted.overlay.")) continue;
      try {
        setAttribute(p, key, value);
      } catch (e) {
        if (this.opts.bestEffortXattrs) continue;
        const msg = messageOf(e);
        if (/not supported/i.test(msg) || (!this.isRoot && /not permitted/i.test(msg))) continue;
        throw e;
      }
    }
  }

  async entry(entry: TarEntry, body: Readable): Promise<void> {
    const rel = cleanName(entry.name, entry.name, this.errors);
    if (rel === "") return; // the root itself belongs to the caller, not to the archive
    const base = posix.basename(rel);
    if (this.opts.whiteouts !== "none" && base.startsWith(WHITEOUT))
      return this.whiteout(rel, base, entry.name);
    if (entry.type === "hardlink") return this.hardlink(rel, entry);
    if ((entry.type === "char" || entry.type === "block") && !this.allowDevices) {
      throw this.errors.unsafe(entry.name, "device nodes are only created when running as root");
    }
    if (entry.type === "symlink" && !entry.linkname) {
      throw this.errors.unsafe(entry.name, "symlink without a target");
    }
    const at = (await this.locate(rel, entry.name, true))!;
    const p = this.abs(at);
    const existing = this.isFree(at) ? null : lstatOrNull(p);
    this.created.add(at);
    const owner = this.ownerOf(entry);

    if (entry.type === "dir") {
      if (existing !== null && !existing.isDirectory()) this.remove(at, existing);
      if (existing === null || !existing.isDirectory()) {
        mkdirSync(p, { mode: 0o700 });
        this.fresh.add(at);
      }
      this.safeDirs.add(at);
      if (owner) lchownSync(p, owner.uid, owner.gid);
      this.setXattrs(p, entry);
      this.dirMeta.push({ rel: at, name: entry.name, entry });
      return;
    }
    if (existing !== null) this.remove(at, existing);

    // Synchronous calls: a layer is mostly small files and links, for which a thread-pool
    // round trip per call costs more than the call.
    switch (entry.type) {
      case "file": {
        const fd = openSync(
          p,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of body) {
            const c = chunk as Buffer;
            for (let off = 0; off < c.length;) off += writeSync(fd, c, off);
          }
          // owner, mode, xattrs, mtime: the order that keeps setuid bits and capabilities
          if (owner) fchownSync(fd, owner.uid, owner.gid);
          fchmodSync(fd, entry.mode);
          this.setXattrs(p, entry);
          futimesSync(fd, entry.mtime, entry.mtime);
        } finally {
          closeSync(fd);
        }
        return;
      }
      case "symlink":
        symlinkSync(entry.linkname!, p);
        this.planted.add(at);
        if (owner) lchownSync(p, owner.uid, owner.gid);
        lutimesSync(p, entry.mtime, entry.mtime);
        return;
      case "char":
      case "block":
      case "fifo": {
        const node: SpecialNode = {
          path: p,
          type: entry.type,
          mode: entry.mode,
          major: entry.devmajor,
          minor: entry.devminor,
        };
        await makeNodes([node], (detail, cause) =>
          this.errors.failed(entry.name, new Error(detail, { cause })),
        );
        if (owner) lchownSync(p, owner.uid, owner.gid);
        // chown may have cleared setuid/setgid; p is the node just made, not a symlink
        chmodSync(p, entry.mode);
        this.setXattrs(p, entry);
        lutimesSync(p, entry.mtime, entry.mtime);
        return;
      }
    }
  }

  private async hardlink(rel: string, entry: TarEntry): Promise<void> {
    const targetRel = cleanName(entry.linkname ?? "", entry.name, this.errors);
    if (targetRel === "") throw this.errors.unsafe(entry.name, "hardlink has no usable target");
    const target = await this.locate(targetRel, entry.name, false);
    const tst = target === null ? null : lstatOrNull(this.abs(target));
    if (target === null || tst === null)
      throw this.errors.unsafe(
        entry.name,
        `hardlink target ${JSON.stringify(entry.linkname)} does not exist`,
      );
    if (tst.isDirectory()) throw this.errors.unsafe(entry.name, "hardlink to a directory");
    if (tst.isSymbolicLink()) throw this.errors.unsafe(entry.name, "hardlink to a symlink");
    const at = (await this.locate(rel, entry.name, true))!;
    if (at === target) throw this.errors.unsafe(entry.name, "hardlink to itself");
    const existing = this.isFree(at) ? null : lstatOrNull(this.abs(at));
    if (existing !== null) this.remove(at, existing);
    this.created.add(at);
    // link(2) never follows a symlink, and the target was just checked to be none
    linkSync(this.abs(target), this.abs(at));
  }

  private async whiteout(rel: string, base: string, name: string): Promise<void> {
    const dirParts = rel.split("/").slice(0, -1);
    if (base === OPAQUE) {
      if (this.opts.whiteouts === "overlay") {
        const dir = (await this.dirOf(dirParts, name, true))!;
        setAttribute(this.abs(dir), "trusted.overlay.opaque", "y");
      } else {
        const dir = await this.dirOf(dirParts, name, false);
        if (dir !== null) this.purge(dir);
      }
      return;
    }
    if (base.startsWith(`${WHITEOUT}${WHITEOUT}`)) return; // other aufs metadata: meaningless here
    const victim = base.slice(WHITEOUT.length);
    if (victim === "" || victim === "." || victim === "..") {
      throw this.errors.unsafe(name, "whiteout names no file");
    }
    const victimRel = [...dirParts, victim].join("/");
    if (this.opts.whiteouts === "overlay") {
      const at = (await this.locate(victimRel, name, true))!;
      if (!this.created.has(at)) this.pendingWhiteouts.push({ rel: victimRel, name });
      return;
    }
    const at = await this.locate(victimRel, name, false);
    if (at === null || this.created.has(at)) return;
    const st = lstatOrNull(this.abs(at));
    if (st !== null) this.remove(at, st);
  }

  /** Opaque directory in delete mode: drop everything lower layers put below dir. */
  private purge(dir: string): void {
    for (const child of readdirSync(this.abs(dir))) {
      const rel = join2(dir, child);
      const st = lstatSync(this.abs(rel));
      if (!this.created.has(rel)) this.remove(rel, st);
      else if (st.isDirectory()) this.purge(rel);
    }
  }

  /**
   * A directory recorded earlier, walked again from the root now: its open descriptor, null when
   * a later entry replaced it (or a parent) with a non-directory. A symlink anywhere on the
   * path is refused. `walked`: the prefixes already found to be real directories in this pass
   * (it changes no path, so each is looked at once).
   */
  private reopenDir(rel: string, name: string, walked: Set<string>): number | null {
    let prefix = "";
    for (const part of rel.split("/")) {
      prefix = join2(prefix, part);
      if (walked.has(prefix)) continue;
      const st = lstatOrNull(this.abs(prefix));
      if (st === null || (!st.isDirectory() && !st.isSymbolicLink())) return null;
      if (st.isSymbolicLink()) {
        throw this.errors.unsafe(
          name,
          `a later entry replaced ${JSON.stringify(prefix)} with a symlink, so this directory's mode and mtime would be applied wherever it points`,
        );
      }
      walked.add(prefix);
    }
    return openSync(
      this.abs(rel),
      constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW,
    );
  }

  async finish(): Promise<void> {
    // Deferred work resolves every path afresh: later entries may have replaced any part of it.
    this.safeDirs.clear();
    this.safeDirs.add("");
    this.followed.clear();
    const whiteouts: SpecialNode[] = [];
    for (const { rel, name } of this.pendingWhiteouts) {
      const at = await this.locate(rel, name, false);
      if (at === null || this.created.has(at)) continue;
      const st = lstatOrNull(this.abs(at));
      if (st !== null) this.remove(at, st);
      this.created.add(at);
      whiteouts.push({ path: this.abs(at), type: "char", mode: 0, major: 0, minor: 0 });
    }
    await makeNodes(whiteouts, (detail, cause) =>
      this.errors.failed("", new Error(`creating overlay whiteouts: ${detail}`, { cause })),
    );
    const walked = new Set<string>();
    for (const { rel, name, entry } of this.dirMeta.reverse()) {
      const fd = this.reopenDir(rel, name, walked);
      if (fd === null) continue;
      try {
        fchmodSync(fd, entry.mode);
        futimesSync(fd, entry.mtime, entry.mtime);
      } finally {
        closeSync(fd);
      }
    }
  }
}

/**
 * Extract an uncompressed tar into targetDir (which must exist). Unsafe entries fail with
 * opts.errors.unsafe (naming the entry), I/O failures with opts.errors.failed, a malformed
 * archive with E_LAYER_INVALID. On failure the directory holds a partial extraction.
 */
export async function extractTar(
  tar: AsyncIterable<Uint8Array>,
  targetDir: string,
  opts: ExtractOptions,
): Promise<void> {
  const root = await realpath(targetDir);
  const x = new Extractor(root, opts, await isEmptyDir(root));
  let current = "";
  try {
    for await (const { entry, body } of readTar(tar)) {
      current = entry.name;
      await x.entry(entry, body);
    }
    current = "";
    await x.finish();
  } catch (e) {
    if (isKilnError(e)) throw e;
    throw opts.errors.failed(current, e);
  }
}

/**
 * Extract an uncompressed layer tar into a snapshot directory. Fails with E_LAYER_UNSAFE
 * (naming the entry) for anything that would escape targetDir, E_LAYER_INVALID for a malformed
 * archive, E_LAYER_APPLY for I/O failures; the directory should then be discarded.
 */
export function applyLayer(
  tar: AsyncIterable<Uint8Array>,
  targetDir: string,
  opts: ApplyOptions,
): Promise<void> {
  return extractTar(tar, targetDir, { ...opts, errors: LAYER_ERRORS });
}
