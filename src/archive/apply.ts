/**
 * Layer apply: extract a layer tar into a snapshot directory without ever touching anything
 * outside it.
 *
 * Safety model: entry names are normalised (leading "/" stripped) and any ".." is refused, so
 * every name is lexically inside the root. Before an entry is written, each parent component
 * is lstat'ed and must be a real directory (never a symlink), and the final component is
 * removed and re-created with O_EXCL|O_NOFOLLOW semantics, so no write ever goes through a
 * symlink. Verified directories are cached and the cache is invalidated whenever this
 * extraction removes a directory; the extraction is sequential, so nothing of ours races the
 * checks (the snapshot must not be in use by anything else while it is being filled).
 */
import { constants, type Stats } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  realpath,
  rm,
  symlink,
  utimes,
} from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import { setAttribute } from "../xattr.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { run, runChecked } from "../process/index.js";
import { unsafeLayer } from "./errors.js";
import type { TarEntry } from "./tar-format.js";
import { readTar } from "./tar-reader.js";

export interface ApplyOptions {
  /**
   * "overlay": the target is one overlayfs layer; OCI whiteouts become overlay whiteouts
   * (char device 0:0, trusted.overlay.opaque=y). "delete": the target is a flattened tree;
   * whiteouts delete what lower layers put there.
   */
  whiteouts: "overlay" | "delete";
  /** Create char/block device nodes (default: only when running as root). */
  allowDevices?: boolean;
  /** Apply the archive's uid/gid (default: only when running as root). */
  sameOwner?: boolean;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const MKNOD_BATCH = 256;

function applyFailed(entry: string, cause: unknown): KilnError {
  return new KilnError(
    "E_LAYER_APPLY",
    `extracting ${JSON.stringify(entry)}: ${messageOf(cause)}`,
    {
      hint: "check free space and that the snapshot directory is writable (device nodes and whiteouts need root)",
      cause,
    },
  );
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** Path segments of an archive name inside the root; refuses anything that could escape. */
function normalize(name: string, entry = name): string {
  if (name.includes("\0")) throw unsafeLayer(entry, `${JSON.stringify(name)} contains a NUL byte`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw unsafeLayer(entry, `${JSON.stringify(name)} contains '..'`);
  return parts.join("/");
}

class Extractor {
  /** Relative paths known to be real directories ("" is the root). */
  private readonly safeDirs = new Set<string>([""]);
  /** Paths this layer created: whiteouts in the same layer never hide them. */
  private readonly created = new Set<string>();
  private readonly dirMeta: { rel: string; entry: TarEntry }[] = [];
  private readonly pendingWhiteouts: string[] = [];
  private readonly isRoot = process.getuid?.() === 0;
  private readonly allowDevices: boolean;
  private readonly sameOwner: boolean;

  constructor(
    private readonly root: string,
    private readonly opts: ApplyOptions,
  ) {
    this.allowDevices = opts.allowDevices ?? this.isRoot;
    this.sameOwner = opts.sameOwner ?? this.isRoot;
  }

  private abs(rel: string): string {
    return rel === "" ? this.root : join(this.root, rel);
  }

  /**
   * Check (and with `create`, make) every parent directory of rel. Returns false when a parent
   * is missing and create is off.
   */
  private async parents(rel: string, name: string, create: boolean): Promise<boolean> {
    const parts = rel.split("/");
    let prefix = "";
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === "" ? parts[i]! : `${prefix}/${parts[i]!}`;
      if (this.safeDirs.has(prefix)) continue;
      const st = await lstatOrNull(this.abs(prefix));
      if (st === null) {
        if (!create) return false;
        await mkdir(this.abs(prefix), { mode: 0o755 });
        this.created.add(prefix);
      } else if (st.isSymbolicLink()) {
        throw unsafeLayer(name, `parent ${JSON.stringify(prefix)} is a symlink`);
      } else if (!st.isDirectory()) {
        throw unsafeLayer(name, `parent ${JSON.stringify(prefix)} is not a directory`);
      }
      this.safeDirs.add(prefix);
    }
    return true;
  }

  /** Remove whatever is at rel (recursively for directories; rm never follows symlinks). */
  private async remove(rel: string, st: Stats): Promise<void> {
    if (st.isDirectory()) {
      await rm(this.abs(rel), { recursive: true, force: true });
      for (const d of this.safeDirs)
        if (d === rel || d.startsWith(`${rel}/`)) this.safeDirs.delete(d);
    } else {
      await rm(this.abs(rel), { force: true });
    }
  }

  private async setXattrs(rel: string, entry: TarEntry): Promise<void> {
    for (const [key, value] of Object.entries(entry.xattrs)) {
      // A layer must not smuggle in overlayfs metadata (opaque/redirect/metacopy).
      if (key.startsWith("trusted.overlay.")) continue;
      try {
        await setAttribute(this.abs(rel), key, value);
      } catch (e) {
        const msg = messageOf(e);
        if (/not supported/i.test(msg) || (!this.isRoot && /not permitted/i.test(msg))) continue;
        throw e;
      }
    }
  }

  /** Owner, mode, xattrs, mtime, in the order that keeps setuid bits and capabilities. */
  private async finishNode(rel: string, entry: TarEntry): Promise<void> {
    const p = this.abs(rel);
    if (this.sameOwner) await chown(p, entry.uid, entry.gid);
    await chmod(p, entry.mode);
    await this.setXattrs(rel, entry);
    await utimes(p, entry.mtime, entry.mtime);
  }

  async entry(entry: TarEntry, body: Readable): Promise<void> {
    const rel = normalize(entry.name);
    if (rel === "") return; // the root itself belongs to the snapshot, not to the layer
    const base = posix.basename(rel);
    if (base.startsWith(WHITEOUT)) return this.whiteout(rel, base, entry.name);
    if (entry.type === "hardlink") {
      return this.hardlink(rel, entry);
    }
    if ((entry.type === "char" || entry.type === "block") && !this.allowDevices) {
      throw unsafeLayer(entry.name, "device nodes are only created when running as root");
    }
    if (entry.type === "symlink" && !entry.linkname) {
      throw unsafeLayer(entry.name, "symlink without a target");
    }
    await this.parents(rel, entry.name, true);
    const p = this.abs(rel);
    const existing = await lstatOrNull(p);
    this.created.add(rel);

    if (entry.type === "dir") {
      if (existing !== null && !existing.isDirectory()) await this.remove(rel, existing);
      if (existing === null || !existing.isDirectory()) await mkdir(p, { mode: 0o700 });
      this.safeDirs.add(rel);
      if (this.sameOwner) await chown(p, entry.uid, entry.gid);
      await this.setXattrs(rel, entry);
      // Mode and mtime last: children change the mtime, and a read-only mode would block them.
      this.dirMeta.push({ rel, entry });
      return;
    }
    if (existing !== null) await this.remove(rel, existing);

    switch (entry.type) {
      case "file": {
        const fh = await open(
          p,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of body) {
            const c = chunk as Buffer;
            for (let off = 0; off < c.length;) off += (await fh.write(c, off)).bytesWritten;
          }
          if (this.sameOwner) await fh.chown(entry.uid, entry.gid);
          await fh.chmod(entry.mode);
          await this.setXattrs(rel, entry);
          await fh.utimes(entry.mtime, entry.mtime);
        } finally {
          await fh.close();
        }
        return;
      }
      case "symlink":
        await symlink(entry.linkname!, p);
        if (this.sameOwner) await lchown(p, entry.uid, entry.gid);
        await lutimes(p, entry.mtime, entry.mtime);
        return;
      case "char":
      case "block":
      case "fifo": {
        const mode = (entry.mode & 0o7777).toString(8);
        const args =
          entry.type === "fifo"
            ? ["-m", mode, p, "p"]
            : [
                "-m",
                mode,
                p,
                entry.type === "char" ? "c" : "b",
                String(entry.devmajor ?? 0),
                String(entry.devminor ?? 0),
              ];
        await runChecked("mknod", args).catch((e: unknown) => {
          throw applyFailed(entry.name, e);
        });
        await this.finishNode(rel, entry);
        return;
      }
    }
  }

  private async hardlink(rel: string, entry: TarEntry): Promise<void> {
    const target = normalize(entry.linkname ?? "", entry.name);
    if (target === "" || target === rel)
      throw unsafeLayer(entry.name, "hardlink has no usable target");
    if (!(await this.parents(target, entry.name, false))) {
      throw unsafeLayer(
        entry.name,
        `hardlink target ${JSON.stringify(entry.linkname)} does not exist`,
      );
    }
    const tst = await lstatOrNull(this.abs(target));
    if (tst === null)
      throw unsafeLayer(
        entry.name,
        `hardlink target ${JSON.stringify(entry.linkname)} does not exist`,
      );
    if (tst.isDirectory()) throw unsafeLayer(entry.name, "hardlink to a directory");
    if (tst.isSymbolicLink()) throw unsafeLayer(entry.name, "hardlink to a symlink");
    await this.parents(rel, entry.name, true);
    const existing = await lstatOrNull(this.abs(rel));
    if (existing !== null) await this.remove(rel, existing);
    this.created.add(rel);
    await link(this.abs(target), this.abs(rel));
  }

  private async whiteout(rel: string, base: string, name: string): Promise<void> {
    const dirRel = posix.dirname(rel) === "." ? "" : posix.dirname(rel);
    if (base === OPAQUE) {
      if (this.opts.whiteouts === "overlay") {
        await this.parents(rel, name, true);
        await setAttribute(this.abs(dirRel), "trusted.overlay.opaque", "y");
      } else if (await this.parents(rel, name, false)) {
        await this.purge(dirRel);
      }
      return;
    }
    if (base.startsWith(`${WHITEOUT}${WHITEOUT}`)) return; // other aufs metadata: meaningless here
    const victim = base.slice(WHITEOUT.length);
    if (victim === "" || victim === "." || victim === "..") {
      throw unsafeLayer(name, "whiteout names no file");
    }
    const victimRel = dirRel === "" ? victim : `${dirRel}/${victim}`;
    if (this.created.has(victimRel)) return;
    if (this.opts.whiteouts === "overlay") {
      await this.parents(victimRel, name, true);
      this.pendingWhiteouts.push(victimRel);
      return;
    }
    if (!(await this.parents(victimRel, name, false))) return;
    const st = await lstatOrNull(this.abs(victimRel));
    if (st !== null) await this.remove(victimRel, st);
  }

  /** Opaque directory in delete mode: drop everything lower layers put below dir. */
  private async purge(dirRel: string): Promise<void> {
    for (const child of await readdir(this.abs(dirRel))) {
      const rel = dirRel === "" ? child : `${dirRel}/${child}`;
      const st = await lstat(this.abs(rel));
      if (!this.created.has(rel)) await this.remove(rel, st);
      else if (st.isDirectory()) await this.purge(rel);
    }
  }

  async finish(): Promise<void> {
    // Overlay whiteouts are made in batches (one shell per batch instead of one mknod spawn
    // per whiteout); the parents are re-checked because later entries may have replaced them.
    const todo: string[] = [];
    for (const rel of this.pendingWhiteouts) {
      if (this.created.has(rel)) continue;
      if (!(await this.parents(rel, rel, false))) continue;
      const st = await lstatOrNull(this.abs(rel));
      if (st !== null) await this.remove(rel, st);
      this.created.add(rel);
      todo.push(this.abs(rel));
    }
    for (let i = 0; i < todo.length; i += MKNOD_BATCH) {
      const script = 'for p do mknod -m 000 "$p" c 0 0 || exit 1; done';
      const fail = (detail: string, cause?: unknown) =>
        applyFailed(todo[i]!, new Error(`creating overlay whiteouts: ${detail}`, { cause }));
      const r = await run("sh", ["-c", script, "sh", ...todo.slice(i, i + MKNOD_BATCH)]).catch(
        (e: unknown) => {
          throw fail(messageOf(e), e);
        },
      );
      if (r.exitCode !== 0) throw fail(r.stderr.trim() || `sh exited ${r.exitCode}`);
    }
    for (const { rel, entry } of this.dirMeta.reverse()) {
      const st = await lstatOrNull(this.abs(rel));
      if (st === null || !st.isDirectory()) continue; // replaced later in the layer
      await chmod(this.abs(rel), entry.mode);
      await utimes(this.abs(rel), entry.mtime, entry.mtime);
    }
  }
}

/**
 * Extract an uncompressed layer tar into targetDir (which must exist). Fails with
 * E_LAYER_UNSAFE (naming the entry) for anything that would escape targetDir, E_LAYER_INVALID
 * for a malformed archive, E_LAYER_APPLY for I/O failures. On failure the directory holds a
 * partial extraction and should be discarded.
 */
export async function applyLayer(
  tar: AsyncIterable<Uint8Array>,
  targetDir: string,
  opts: ApplyOptions,
): Promise<void> {
  const x = new Extractor(await realpath(targetDir), opts);
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
    throw applyFailed(current, e);
  }
}
