/** File operations on a root filesystem directory: COPY/ADD, WORKDIR's mkdir, heredoc files. */
import { lstatSync, readdirSync } from "node:fs";
import { lchown, lstat, mkdir, rm, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { KilnError, isKilnError } from "../errors.js";
import { mkdirAllHost, resolveWildcards } from "./copy.js";
import type { Owner } from "./owner.js";
import { cleanInRoot, resolveInRoot } from "../rootpath/index.js";

export { copyInto, resolveWildcards, type CopyRequest, type CopySource } from "./copy.js";
export { parseChmod, type ChmodFn } from "./chmod.js";
export { resolveOwner, type Owner } from "./owner.js";
// Re-exported because fileops' callers resolve their own paths (mount sources, context
// patterns) exactly as COPY does.
export { cleanInRoot, resolveInRoot } from "../rootpath/index.js";
export { compileGlob, hasWildcard, splitWildcards } from "./glob.js";
export { compilePatterns, type MatchInfo, type PatternMatcher } from "./patterns.js";
export { extractArchive, isArchive } from "./unpack.js";

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/**
 * BuildKit's mkdir: the path is resolved inside the root (following symlinks). With
 * makeParents every created directory, parents included, gets `mode` and `owner`, and an
 * existing directory is fine; without it only the last component is created (an existing
 * entry of any kind is left alone) and the process umask applies, as in BuildKit.
 */
export async function mkdirIn(
  root: string,
  path: string,
  opts: { mode: number; makeParents: boolean; owner?: Owner },
): Promise<void> {
  const host = await resolveInRoot(root, path, { followFinal: true });
  const mode = opts.mode & 0o777;
  try {
    if (opts.makeParents) {
      mkdirAllHost(root, host, mode, opts.owner);
      return;
    }
    await mkdir(host, { mode });
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return;
    if (isKilnError(e)) throw new KilnError("E_MKDIR", e.message, { hint: e.hint, cause: e });
    throw new KilnError(
      "E_MKDIR",
      `cannot create directory ${cleanInRoot(path)}: ${(e as Error).message}`,
      {
        hint: "check that the parent exists and is a directory",
        cause: e,
      },
    );
  }
  if (opts.owner) await lchown(host, opts.owner.uid, opts.owner.gid);
}

/**
 * BuildKit's mkfile: writes `data` at the path resolved inside the root (a final symlink is
 * followed, inside the root). An existing file is truncated and keeps its mode; a new one
 * gets `mode` (less the umask). The parent directory must exist.
 */
export async function mkfileIn(
  root: string,
  path: string,
  data: string | Uint8Array,
  opts: { mode: number; owner?: Owner },
): Promise<void> {
  const host = await resolveInRoot(root, path, { followFinal: true });
  try {
    await writeFile(host, data, { mode: opts.mode & 0o777 });
  } catch (e) {
    throw new KilnError("E_MKFILE", `cannot write ${cleanInRoot(path)}: ${(e as Error).message}`, {
      hint: "check that the parent directory exists and the path is not a directory",
      cause: e,
    });
  }
  if (opts.owner) await lchown(host, opts.owner.uid, opts.owner.gid);
}

async function rmPath(root: string, path: string, allowNotFound: boolean): Promise<void> {
  const clean = cleanInRoot(path);
  if (clean === "/") throw new KilnError("E_RM", "refusing to remove the root directory");
  const host = join(
    await resolveInRoot(root, posix.dirname(clean), { followFinal: true }),
    posix.basename(clean),
  );
  if (!allowNotFound) {
    // existence is judged through a final symlink, inside the root
    const seen = await resolveInRoot(root, clean, { followFinal: true });
    try {
      await lstat(seen);
    } catch (e) {
      throw new KilnError("E_RM", `cannot remove ${clean}: not found`, { cause: e });
    }
  }
  await rm(host, { recursive: true, force: true });
}

/** BuildKit's rm: the last component is never followed; wildcards match like COPY sources. */
export async function rmIn(
  root: string,
  path: string,
  allowNotFound: boolean,
  allowWildcard = false,
): Promise<void> {
  if (!allowWildcard) return rmPath(root, path, allowNotFound);
  const matches = await resolveWildcards({ root, label: "the filesystem" }, path, false);
  for (const m of matches) await rmPath(root, m, allowNotFound);
}

/**
 * What a COPY's layer depends on in the filesystem it copies into, besides its sources, when
 * that filesystem is an overlay: the directories on its destination path, which the copy
 * copies up with their mode and owner, and whether the destination exists. Two roots with the
 * same answer for a destination get the same layer from the same copy (its created entries
 * come from the sources and the op alone). undefined when the destination is a symlink, a
 * file, or a directory with entries (the layer would then also depend on those), or a symlink
 * is on its path.
 */
export function copyDestinationFacts(root: string, dest: string): string | undefined {
  const parts = cleanInRoot(dest).split("/").filter(Boolean);
  const facts: string[] = [];
  let host = root;
  for (let i = 0; i <= parts.length; i++) {
    if (i > 0) host = join(host, parts[i - 1]!);
    let st;
    try {
      st = lstatSync(host);
    } catch {
      facts.push(`${i} missing`);
      break;
    }
    if (!st.isDirectory()) return undefined;
    if (i === parts.length && readdirSync(host).length > 0) return undefined;
    facts.push(`${i} ${st.mode} ${st.uid}:${st.gid}`);
  }
  return `${parts.join("/")}: ${facts.join(" ")}`;
}
