/**
 * COPY/ADD into a root filesystem with BuildKit's semantics: wildcards, a directory source
 * copies its contents, trailing-slash and existing-directory destination rules, parent
 * directories created, ownership and mode overrides. Sources and destinations are both
 * resolved inside their roots, so neither a context symlink nor an image symlink can lead a
 * copy outside.
 */
import { constants } from "node:fs";
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  readlink,
  rm,
  symlink,
  utimes,
  lutimes,
  stat,
} from "node:fs/promises";
import { posix, join } from "node:path";
import type { Stats } from "node:fs";
import { KilnError } from "../errors.js";
import { compileGlob, hasWildcard, literalPrefix } from "./glob.js";
import { cleanInRoot, resolveInRoot } from "./resolve.js";

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopySource {
  root: string;
  /** how the source is named in errors, e.g. "build context" or "stage build" */
  label: string;
  /** paths (relative, no leading slash) the source does not expose, e.g. .dockerignore'd */
  excluded?: (rel: string) => boolean;
  /** why a path is excluded, for the error message */
  exclusionReason?: (rel: string) => string | undefined;
  /** files from a build context belong to root unless --chown says otherwise */
  ownerOverride?: Owner;
}

export interface CopyRequest {
  src: string;
  dest: string;
  owner?: Owner;
  /** applies to every copied file and directory */
  mode?: (current: number, isDir: boolean) => number;
  dirContents: boolean;
  allowWildcard: boolean;
  allowEmptyWildcard: boolean;
  excludes: string[];
  parents: boolean;
}

/** Copies `req.src` from `source` into the root filesystem at `destRoot`. */
export async function copyInto(
  destRoot: string,
  source: CopySource,
  req: CopyRequest,
): Promise<void> {
  const matches = await expandSource(source, req);
  const excludes = req.excludes.map(compileGlob);
  const destClean = cleanInRoot(req.dest);
  const destWantsDir = req.dest.endsWith("/") || req.dest.endsWith("/.") || matches.length > 1;
  for (const rel of matches) {
    const srcHost = await resolveInRoot(source.root, rel, { followFinal: true });
    const st = await lstatOrUndefined(srcHost);
    if (!st) throw notFound(source, rel);
    let target: string;
    if (req.parents) {
      target = posix.join(destClean, parentsRelative(req.src, rel));
    } else if (st.isDirectory() && req.dirContents) {
      target = destClean;
    } else {
      const destHost = await resolveInRoot(destRoot, destClean, { followFinal: true });
      const destSt = await statOrUndefined(destHost);
      const intoDir = destWantsDir || (destSt?.isDirectory() ?? false);
      target = intoDir ? posix.join(destClean, posix.basename(rel)) : destClean;
    }
    await ensureParents(destRoot, target, req.owner);
    const copier = new TreeCopier(destRoot, source, req, excludes);
    await copier.copy(srcHost, rel, target, st);
  }
}

function parentsRelative(pattern: string, rel: string): string {
  // `--parents` keeps the path below the `./` pivot, or the whole path without one
  const pivot = pattern.indexOf("/./");
  if (pivot >= 0) {
    const base = cleanInRoot(pattern.slice(0, pivot)).slice(1);
    return base === "" ? rel : posix.relative(base, rel);
  }
  return rel;
}

async function expandSource(source: CopySource, req: CopyRequest): Promise<string[]> {
  const clean = cleanInRoot(req.src).slice(1);
  if (!req.allowWildcard || !hasWildcard(clean)) {
    if (clean !== "" && source.excluded?.(clean)) throw notFound(source, clean);
    return [clean];
  }
  const match = compileGlob(clean);
  const prefix = literalPrefix(clean);
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const host = await resolveInRoot(source.root, rel, { followFinal: false });
    let entries: string[];
    try {
      entries = (await readdir(host)).sort();
    } catch {
      return;
    }
    for (const name of entries) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (source.excluded?.(childRel)) continue;
      if (match(childRel)) found.push(childRel);
      const st = await lstat(join(host, name));
      if (st.isDirectory()) await walk(childRel);
    }
  };
  await walk(prefix.includes("/") ? posix.dirname(prefix) : "");
  const uniq = [...new Set(found)].filter(
    (p) => !found.some((q) => q !== p && p.startsWith(q + "/") && !req.parents),
  );
  if (uniq.length === 0 && !req.allowEmptyWildcard) {
    throw new KilnError(
      "E_COPY_NOT_FOUND",
      `no source files were specified: ${req.src} matches nothing in ${source.label}`,
      {
        hint: "check the pattern and the .dockerignore file",
      },
    );
  }
  return uniq;
}

function notFound(source: CopySource, rel: string): KilnError {
  const why = source.exclusionReason?.(rel);
  return new KilnError(
    "E_COPY_NOT_FOUND",
    `"/${rel}": not found in ${source.label}${why ? ` (excluded by ${why})` : ""}`,
    {
      hint: why
        ? "remove or narrow that .dockerignore rule, or add an exception (!pattern)"
        : "check the path; COPY sources are relative to the build context root",
    },
  );
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await lstat(p);
  } catch {
    return undefined;
  }
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await stat(p);
  } catch {
    return undefined;
  }
}

/** Creates the missing parents of `target` (a path inside destRoot) with mode 0755. */
export async function ensureParents(
  destRoot: string,
  target: string,
  owner?: Owner,
): Promise<void> {
  const parts = cleanInRoot(target).split("/").filter(Boolean);
  parts.pop();
  let cur = "/";
  for (const part of parts) {
    cur = posix.join(cur, part);
    const host = await resolveInRoot(destRoot, cur, { followFinal: true });
    const st = await lstatOrUndefined(host);
    if (st?.isDirectory()) continue;
    if (st) {
      throw new KilnError(
        "E_COPY_DEST",
        `cannot copy to ${target}: ${cur} exists and is not a directory`,
      );
    }
    await mkdir(host, { mode: 0o755 });
    await chmod(host, 0o755);
    if (owner) await lchown(host, owner.uid, owner.gid);
  }
}

class TreeCopier {
  constructor(
    private readonly destRoot: string,
    private readonly source: CopySource,
    private readonly req: CopyRequest,
    private readonly excludes: ((rel: string) => boolean)[],
  ) {}

  private skip(rel: string): boolean {
    return (this.source.excluded?.(rel) ?? false) || this.excludes.some((m) => m(rel));
  }

  private owner(st: Stats): Owner {
    return this.req.owner ?? this.source.ownerOverride ?? { uid: st.uid, gid: st.gid };
  }

  async copy(srcHost: string, rel: string, target: string, st: Stats): Promise<void> {
    const destHost = await resolveInRoot(this.destRoot, target, { followFinal: false });
    const existing = await lstatOrUndefined(destHost);
    const owner = this.owner(st);
    if (st.isDirectory()) {
      if (existing && !existing.isDirectory()) {
        if (existing.isSymbolicLink()) {
          // a symlink to a directory in the image is written through, scoped to the root
          const through = await resolveInRoot(this.destRoot, target, { followFinal: true });
          if ((await statOrUndefined(through))?.isDirectory()) {
            await this.copyChildren(srcHost, rel, target);
            return;
          }
        }
        await rm(destHost, { force: true, recursive: true });
      }
      if (!existing || !existing.isDirectory()) await mkdir(destHost);
      await this.copyChildren(srcHost, rel, target);
      await this.finish(destHost, st, owner, true);
      return;
    }
    if (existing) await rm(destHost, { force: true, recursive: true });
    if (st.isSymbolicLink()) {
      await symlink(await readlink(srcHost), destHost);
      await lchown(destHost, owner.uid, owner.gid);
      await lutimes(destHost, st.atime, st.mtime);
      return;
    }
    if (!st.isFile()) {
      throw new KilnError(
        "E_COPY_UNSUPPORTED",
        `cannot copy ${rel}: not a regular file, directory or symlink`,
      );
    }
    await copyFile(srcHost, destHost, constants.COPYFILE_FICLONE);
    await this.finish(destHost, st, owner, false);
  }

  private async copyChildren(srcHost: string, rel: string, target: string): Promise<void> {
    const names = (await readdir(srcHost)).sort();
    for (const name of names) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (this.skip(childRel)) {
        if (!(await this.hasIncludedDescendant(join(srcHost, name), childRel))) continue;
      }
      const childHost = join(srcHost, name);
      const st = await lstat(childHost);
      await this.copy(childHost, childRel, posix.join(target, name), st);
    }
  }

  /** An excluded directory is still entered when an exception pattern re-includes something. */
  private async hasIncludedDescendant(host: string, rel: string): Promise<boolean> {
    const st = await lstat(host);
    if (!st.isDirectory()) return false;
    for (const name of await readdir(host)) {
      const childRel = `${rel}/${name}`;
      if (!this.skip(childRel)) return true;
      if (await this.hasIncludedDescendant(join(host, name), childRel)) return true;
    }
    return false;
  }

  private async finish(destHost: string, st: Stats, owner: Owner, isDir: boolean): Promise<void> {
    await lchown(destHost, owner.uid, owner.gid);
    const perm = st.mode & 0o7777;
    await chmod(destHost, this.req.mode ? this.req.mode(perm, isDir) : perm);
    await utimes(destHost, st.atime, st.mtime);
  }
}
