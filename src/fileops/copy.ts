/**
 * COPY/ADD into a root filesystem with BuildKit's file-op semantics (fsutil's copy package):
 * wildcards resolved with filepath.Match, the destination decided per source (trailing slash,
 * existing directory), a directory source copying its contents, missing parents created,
 * hardlinks inside one source kept, symlinks copied as links, xattrs, ownership, modes and
 * times carried over, --exclude and --parents patterns. Every path on both sides is resolved
 * inside its root, so neither a context symlink nor an image symlink leads a copy outside.
 */
import {
  chmodSync,
  constants,
  copyFileSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  type Stats,
} from "node:fs";
import { copyFile } from "node:fs/promises";
import { dirname, join, posix, relative } from "node:path";
import { getAttribute, listAttributes, setAttribute } from "../xattr.js";
import { KilnError } from "../errors.js";
import { makeNodes, splitDev } from "../archive/index.js";
import { compileGlob, hasWildcard, splitWildcards } from "./glob.js";
import type { Owner } from "./owner.js";
import { compilePatterns, type MatchInfo, type PatternMatcher } from "./patterns.js";
import { cleanInRoot, resolveInRoot } from "../rootpath/index.js";
import { extractArchive, isArchive } from "./unpack.js";

export interface CopySource {
  root: string;
  /** how the source is named in errors, e.g. "build context" or "stage build" */
  label: string;
  /** paths (relative, no leading slash) the source does not expose, e.g. .dockerignore'd */
  excluded?: (rel: string) => boolean;
  /** why a path is excluded, for the error message */
  exclusionReason?: (rel: string) => string | undefined;
  /**
   * Whether an excluded directory can hold re-included paths (the ignore rules have `!`
   * exceptions); default true. With false, excluded directories are never searched.
   */
  reincludes?: boolean;
  /** files from a build context belong to root unless --chown says otherwise */
  ownerOverride?: Owner;
  /**
   * The root directory's times are those of the copy: BuildKit receives a build context into a
   * fresh directory, so `COPY . /app` stamps /app with the build's time, not the context's.
   */
  rootStampedNow?: boolean;
}

function stampedNow(fi: Stats): Stats {
  const now = Date.now();
  return Object.assign(Object.create(Object.getPrototypeOf(fi) as object) as Stats, fi, {
    atimeMs: now,
    mtimeMs: now,
    atime: new Date(now),
    mtime: new Date(now),
  });
}

export interface CopyRequest {
  src: string;
  dest: string;
  /** --chown, already resolved (see resolveOwner) */
  owner?: Owner;
  /** --chmod (see parseChmod); an octal one also sets the mode of created parent directories */
  mode?: ((current: number, isDir: boolean) => number) & { octal?: number };
  /** created parent directories get the default mode whatever `mode` is (COPY --link) */
  defaultParentMode?: boolean;
  dirContents: boolean;
  allowWildcard: boolean;
  allowEmptyWildcard: boolean;
  excludes: string[];
  parents: boolean;
  /** ADD: extract a source that is a tar archive (plain, gzip, bzip2, xz, zstd); default false */
  unpack?: boolean;
  /** follow a symlink named as the source (inside the source root); default true */
  followSymlinks?: boolean;
}

const DEFAULT_DIR_MODE = 0o755;

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function statOrUndefined(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    // ENOENT (every file a COPY creates) without an exception: ~15 µs a file less
    return lstatSync(p, { throwIfNoEntry: false });
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

/** How a host path under root reads inside it, for messages. */
function inRoot(root: string, host: string): string {
  return "/" + relative(root, host);
}

function notFound(source: CopySource, rel: string): KilnError {
  const clean = cleanInRoot(rel);
  const why = source.exclusionReason?.(clean.slice(1));
  return new KilnError(
    "E_COPY_NOT_FOUND",
    `${JSON.stringify(clean)}: not found in ${source.label}${why ? ` (excluded by ${why})` : ""}`,
    {
      hint: why
        ? "remove or narrow that .dockerignore rule, or add an exception (!pattern)"
        : "check the path; COPY sources are relative to the build context root (or the --from stage)",
    },
  );
}

/**
 * Creates `host` and its missing parents (like MkdirAll) with `mode`, owned by `owner` when
 * given. `host` must come from resolveInRoot, so its existing part has no symlinks.
 */
export function mkdirAllHost(root: string, host: string, mode: number, owner?: Owner): void {
  const st = statOrUndefined(host);
  if (st?.isDirectory()) return;
  if (st) {
    throw new KilnError(
      "E_COPY_DEST",
      `cannot create directory ${inRoot(root, host)}: not a directory`,
      {
        hint: "a file exists where the destination needs a directory",
      },
    );
  }
  if (host !== root) mkdirAllHost(root, dirname(host), mode, owner);
  try {
    mkdirSync(host, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return;
    throw e;
  }
  chmodSync(host, mode);
  if (owner) lchownSync(host, owner.uid, owner.gid);
}

/** How long a copy runs before it lets the event loop run. */
const YIELD_AFTER_MS = 10;

/** How many plain files of one directory are copied at once. */
const PARALLEL_FILES = 8;

/**
 * A file at most this big is copied synchronously: a COPY is mostly small files, for which a
 * thread-pool round trip costs more than the copy; a bigger one goes to the thread pool, so
 * kiln's thread (other platforms' steps, progress) does not wait for it.
 */
const SYNC_COPY_MAX = 1024 * 1024;

async function copyContent(src: string, target: string, size: number): Promise<void> {
  if (size <= SYNC_COPY_MAX) copyFileSync(src, target, constants.COPYFILE_FICLONE);
  else await copyFile(src, target, constants.COPYFILE_FICLONE);
}

/** Whether a path of the source is visible, i.e. not hidden by .dockerignore. */
function visible(source: CopySource, host: string, st: Stats): boolean {
  if (!source.excluded) return true;
  const rel = relative(source.root, host);
  if (rel === "" || !source.excluded(rel)) return true;
  // an excluded directory still shows when an exception (!pattern) re-includes something in it
  if (!st.isDirectory() || source.reincludes === false) return false;
  for (const name of readdirSync(host)) {
    const child = join(host, name);
    if (visible(source, child, lstatSync(child))) return true;
  }
  return false;
}

/**
 * Source paths a (possibly wildcard) source names, relative to the source root, in walk
 * order. A matching directory is not searched further, like filepath.Walk with SkipDir.
 */
export async function resolveWildcards(
  source: CopySource,
  src: string,
  follow: boolean,
): Promise<string[]> {
  const clean = cleanInRoot(src).slice(1);
  const { dir, pattern } = splitWildcards(clean);
  if (pattern === "") return [clean];
  const base = await resolveInRoot(source.root, dir, { followFinal: follow });
  const st = lstatOrUndefined(base);
  if (!st || !visible(source, base, st)) throw notFound(source, dir);
  const match = compileGlob(pattern);
  const out: string[] = [];
  const walk = async (host: string, rel: string): Promise<void> => {
    for (const name of readdirSync(host).sort()) {
      const childHost = join(host, name);
      const childRel = rel === "" ? name : `${rel}/${name}`;
      const cst = lstatSync(childHost);
      if (!visible(source, childHost, cst)) continue;
      if (match(childRel)) out.push(relative(source.root, childHost));
      else if (cst.isDirectory()) await walk(childHost, childRel);
    }
  };
  if (st.isDirectory()) await walk(base, "");
  return out;
}

/** Copies `req.src` from `source` into the root filesystem at `destRoot`. */
export async function copyInto(
  destRoot: string,
  source: CopySource,
  req: CopyRequest,
): Promise<void> {
  let src = req.src;
  let include: PatternMatcher | undefined;
  let required: string | undefined;
  if (req.parents) {
    // `--parents`: copy from the pivot (`/./`, else the root), keeping the rest of the path
    const cut = src.indexOf("/./");
    let pattern: string;
    if (cut < 0) {
      pattern = src;
      src = "/";
    } else {
      pattern = src.slice(cut + 3);
      src = src.slice(0, cut);
    }
    pattern = cleanInRoot(pattern).slice(1);
    include = compilePatterns([pattern]);
    if (!hasWildcard(src) && !hasWildcard(pattern))
      required = posix.join(cleanInRoot(src), pattern);
  }
  const exclude = compilePatterns(req.excludes);
  const follow = req.followSymlinks ?? true;
  let matches: string[];
  if (req.allowWildcard) {
    matches = await resolveWildcards(source, src, follow);
    if (matches.length === 0) {
      if (req.allowEmptyWildcard) return;
      throw new KilnError(
        "E_COPY_NOT_FOUND",
        `no source files were specified: ${src} matches nothing in ${source.label}`,
        { hint: "check the pattern and the .dockerignore file" },
      );
    }
  } else {
    matches = [cleanInRoot(src).slice(1)];
  }
  if (required !== undefined) {
    const host = await resolveInRoot(source.root, required, { followFinal: false });
    const st = lstatOrUndefined(host);
    if (!st || !visible(source, host, st)) throw notFound(source, required);
  }
  for (const m of matches) {
    if (req.unpack && (await unpackOne(destRoot, source, m, req))) continue;
    await copyOne(destRoot, source, m, req, include, exclude);
  }
}

async function sourceHost(
  source: CopySource,
  rel: string,
  follow: boolean,
): Promise<{ host: string; st: Stats }> {
  const host = await resolveInRoot(source.root, rel, { followFinal: follow });
  const st = lstatOrUndefined(host);
  if (!st || !visible(source, host, st)) throw notFound(source, rel);
  return { host, st };
}

/** ADD's local archive case: true when `rel` was an archive and has been extracted. */
async function unpackOne(
  destRoot: string,
  source: CopySource,
  rel: string,
  req: CopyRequest,
): Promise<boolean> {
  const { host, st } = await sourceHost(source, rel, true);
  if (!st.isFile() || !(await isArchive(host))) return false;
  const dest = await resolveInRoot(destRoot, req.dest, { followFinal: true });
  mkdirAllHost(destRoot, dest, DEFAULT_DIR_MODE, req.owner);
  await extractArchive(host, dest, { owner: req.owner, name: cleanInRoot(rel) });
  return true;
}

async function copyOne(
  destRoot: string,
  source: CopySource,
  rel: string,
  req: CopyRequest,
  include: PatternMatcher | undefined,
  exclude: PatternMatcher | undefined,
): Promise<void> {
  const destClean = cleanInRoot(req.dest);
  const wantsDir = destClean === "/" || req.dest.endsWith("/") || req.dest.endsWith("/.");
  const parentMode =
    req.mode?.octal !== undefined && !req.defaultParentMode
      ? req.mode.octal & 0o777
      : DEFAULT_DIR_MODE;
  const ensure = wantsDir ? destClean : posix.dirname(destClean);
  mkdirAllHost(
    destRoot,
    await resolveInRoot(destRoot, ensure, { followFinal: true }),
    parentMode,
    req.owner,
  );

  const { host: srcHost, st: srcSt } = await sourceHost(source, rel, req.followSymlinks ?? true);
  const destHost = await resolveInRoot(destRoot, destClean, { followFinal: true });
  const destSt = statOrUndefined(destHost);
  let target = destHost;
  if (
    (!req.dirContents && srcSt.isDirectory() && destSt) ||
    (!srcSt.isDirectory() && destSt?.isDirectory())
  ) {
    target = join(destHost, posix.basename(cleanInRoot(rel)));
  }
  const parent = req.dirContents && srcSt.isDirectory() && !destSt ? target : dirname(target);
  mkdirAllHost(destRoot, parent, parentMode, req.owner);
  const copier = new TreeCopier(destRoot, source, req, include, exclude);
  await copier.copy(srcHost, "", target, false, undefined, undefined);
}

interface PendingDir {
  src: string;
  dst: string;
  copied: boolean;
}

/** One source tree's copy: owns the hardlink map and the delayed parent directories. */
class TreeCopier {
  private readonly inodes = new Map<string, string>();
  private readonly pending: PendingDir[] = [];
  private lastYield = performance.now();

  constructor(
    private readonly destRoot: string,
    private readonly source: CopySource,
    private readonly req: CopyRequest,
    private readonly include: PatternMatcher | undefined,
    private readonly exclude: PatternMatcher | undefined,
  ) {}

  async copy(
    src: string,
    comps: string,
    target: string,
    overwriteMeta: boolean,
    parentInc: MatchInfo,
    parentExc: MatchInfo,
    /** src's lstat, when the caller just took it */
    srcStat?: Stats,
  ): Promise<void> {
    let included = true;
    let excluded = false;
    let incInfo: MatchInfo;
    let excInfo: MatchInfo;
    if (comps !== "") {
      if (this.include) {
        const r = this.include.match(comps, parentInc);
        included = r.matched;
        incInfo = r.info;
      }
      if (this.exclude) {
        const r = this.exclude.match(comps, parentExc);
        excInfo = r.info;
        if (r.matched) {
          included = false;
          excluded = true;
        }
      }
      if (!included && !this.include && !this.exclude?.hasExclusions) return;
    }
    let fi = srcStat ?? lstatSync(src);
    if (comps === "" && src === this.source.root && this.source.rootStampedNow && fi.isDirectory())
      fi = stampedNow(fi);
    if (!included && !fi.isDirectory()) return;
    const targetFi = lstatOrUndefined(target);
    if (included) this.createPendingParents(overwriteMeta);
    if (!fi.isDirectory()) this.ensureEmptyFileTarget(target, targetFi);

    let copyInfo = included;
    let restoreTimes = false;
    if (fi.isDirectory()) {
      const created = await this.copyDirectory(
        src,
        comps,
        target,
        fi,
        overwriteMeta,
        included,
        excluded,
        incInfo,
        excInfo,
      );
      if (!overwriteMeta) {
        copyInfo = created;
        restoreTimes = !created;
      }
    } else if (fi.isFile()) {
      const key = `${fi.dev}:${fi.ino}`;
      const first = fi.nlink > 1 ? this.inodes.get(key) : undefined;
      if (first !== undefined) linkSync(first, target);
      else {
        if (fi.nlink > 1) this.inodes.set(key, target);
        await copyContent(src, target, fi.size);
      }
    } else if (fi.isSymbolicLink()) {
      symlinkSync(readlinkSync(src), target);
    } else if (fi.isSocket()) {
      // sockets cannot be copied; like BuildKit, leave an empty file in their place
      writeFileSync(target, "", { flag: "wx" });
    } else {
      await makeNode(target, fi);
    }

    if (copyInfo) {
      this.copyFileInfo(fi, src, target);
    } else if (restoreTimes && targetFi) {
      utimesSync(target, fi.atimeMs / 1000, fi.mtimeMs / 1000);
    }
  }

  /** Returns whether the directory was created (rather than merged into). */
  private async copyDirectory(
    src: string,
    comps: string,
    dst: string,
    fi: Stats,
    overwriteMeta: boolean,
    included: boolean,
    excluded: boolean,
    incInfo: MatchInfo,
    excInfo: MatchInfo,
  ): Promise<boolean> {
    let created = false;
    const pending: PendingDir = { src, dst, copied: false };
    if (included) {
      created = this.copyDirectoryOnly(dst, fi, overwriteMeta);
      pending.copied = true;
    }
    this.pending.push(pending);
    try {
      if (excluded && !this.exclude?.hasExclusions) return false;
      // Plain files (one link, parents already made) are copied several at once: a copy is a
      // handful of syscalls, each a round trip to the thread pool. Anything else goes alone,
      // after the files before it, so hard links and pending parents see a settled tree.
      const files: Promise<void>[] = [];
      const settle = async (): Promise<void> => {
        const results = await Promise.allSettled(files.splice(0));
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
      };
      for (const name of readdirSync(src).sort()) {
        await this.yieldNow();
        const child = join(src, name);
        const cst = lstatSync(child);
        if (!visible(this.source, child, cst)) continue;
        const childComps = comps === "" ? name : `${comps}/${name}`;
        const copy = () =>
          this.copy(child, childComps, join(dst, name), true, incInfo, excInfo, cst);
        if (cst.isFile() && cst.nlink === 1 && this.pending.every((p) => p.copied)) {
          files.push(copy());
          if (files.length >= PARALLEL_FILES) await settle();
        } else {
          await settle();
          await copy();
        }
      }
      await settle();
    } finally {
      this.pending.pop();
    }
    return created;
  }

  /**
   * The copy's calls are synchronous, and awaiting them only runs microtasks: every so often
   * the event loop gets a turn, so a large COPY does not stall the rest of the build (another
   * platform's steps, uploads, progress).
   */
  private async yieldNow(): Promise<void> {
    if (performance.now() - this.lastYield < YIELD_AFTER_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.lastYield = performance.now();
  }

  private copyDirectoryOnly(dst: string, fi: Stats, overwriteMeta: boolean): boolean {
    const st = lstatOrUndefined(dst);
    if (!st) {
      mkdirSync(dst, { mode: fi.mode & 0o7777 });
      return true;
    }
    if (!st.isDirectory()) {
      throw new KilnError(
        "E_COPY_DEST",
        `cannot copy to non-directory: ${inRoot(this.destRoot, dst)}`,
        { hint: "the destination has a file or symlink where the source has a directory" },
      );
    }
    if (overwriteMeta) chmodSync(dst, fi.mode & 0o7777);
    return false;
  }

  /** Directories skipped by --parents patterns are created once something inside is copied. */
  private createPendingParents(overwriteMeta: boolean): void {
    for (const p of this.pending) {
      if (p.copied) continue;
      const fi = statSync(p.src);
      if (this.copyDirectoryOnly(p.dst, fi, overwriteMeta)) {
        this.copyFileInfo(fi, p.src, p.dst);
      }
      p.copied = true;
    }
  }

  /** `st`: the target's lstat, just taken. */
  private ensureEmptyFileTarget(target: string, st: Stats | undefined): void {
    if (!st) return;
    if (st.isDirectory()) {
      throw new KilnError(
        "E_COPY_DEST",
        `cannot replace directory ${inRoot(this.destRoot, target)} with a file`,
        { hint: "remove the directory first (RUN rm -r) or copy to another path" },
      );
    }
    rmSync(target);
  }

  /** Owner, mode, times, then xattrs: the order that keeps setuid bits and capabilities. */
  private copyFileInfo(fi: Stats, src: string, target: string): void {
    const owner = this.req.owner ?? this.source.ownerOverride ?? { uid: fi.uid, gid: fi.gid };
    lchownSync(target, owner.uid, owner.gid);
    if (fi.isSymbolicLink()) {
      lutimesSync(target, fi.atimeMs / 1000, fi.mtimeMs / 1000);
      return; // the xattr binding follows symlinks: a link's own xattrs are not copied
    }
    const perm = fi.mode & 0o7777;
    chmodSync(target, this.req.mode ? this.req.mode(perm, fi.isDirectory()) : perm);
    utimesSync(target, fi.atimeMs / 1000, fi.mtimeMs / 1000);
    copyXattrs(src, target);
  }
}

/** Best effort, as BuildKit: a filesystem that refuses an attribute does not fail the copy. */
function copyXattrs(src: string, target: string): void {
  let keys: string[];
  try {
    keys = listAttributes(src);
  } catch {
    return;
  }
  for (const key of keys) {
    try {
      const value = getAttribute(src, key);
      if (value !== null) setAttribute(target, key, value);
    } catch {
      // e.g. security.* without privilege, or trusted.* on an overlay mount
    }
  }
}

/** Device nodes and FIFOs, made by archive/'s one mknod. */
async function makeNode(target: string, fi: Stats): Promise<void> {
  const type = fi.isFIFO() ? "fifo" : fi.isCharacterDevice() ? "char" : "block";
  await makeNodes(
    [{ path: target, type, mode: fi.mode & 0o7777, ...splitDev(fi.rdev) }],
    (detail, cause) =>
      new KilnError("E_COPY_DEVICE", `creating ${target}: ${detail}`, {
        hint: "device nodes can only be created as root",
        cause,
      }),
  );
}
