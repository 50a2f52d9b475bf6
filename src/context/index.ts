/**
 * The build context: a directory filtered by `.dockerignore` (or `<Dockerfile>.dockerignore`,
 * which wins), and content checksums of the parts a step reads, so a COPY is invalidated
 * only by a change to the files it copies.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  type Stats,
} from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, join, normalize, relative, resolve } from "node:path";
import dockerignore from "@balena/dockerignore";
import { KilnError } from "../errors.js";
import { cleanInRoot, compileGlob, hasWildcard, splitWildcards } from "../fileops/index.js";
import { resolveInRootSync } from "../rootpath/index.js";

export interface ContextFilter {
  /** the ignore file that was used, for messages */
  file: string | undefined;
  patterns: string[];
  /** relative path (no leading slash) excluded? */
  excluded(rel: string): boolean;
  /** the rule that excluded a path, e.g. `.dockerignore: *.log` */
  reason(rel: string): string | undefined;
}

/** Parses ignore-file text as Docker does: comments, blank lines, trimmed patterns. */
export function parseIgnoreFile(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (raw.startsWith("#")) continue;
    const line = raw.trim();
    if (line === "") continue;
    out.push(line);
  }
  return out;
}

export function makeFilter(patterns: string[], file: string | undefined): ContextFilter {
  // no rules: nothing to ask per path (the matcher would also remember every path it saw)
  if (patterns.length === 0)
    return { file, patterns, excluded: () => false, reason: () => undefined };
  const ig = dockerignore({ ignorecase: false }).add(patterns);
  const deepest = deepestMatch(patterns);
  return {
    file,
    patterns,
    // a path deeper than any rule reaches is decided by its ancestor that deep (every rule is
    // tried on a path's own depth and on its parent of the rule's depth): one cached answer
    // per directory instead of a test and a cache entry for each of 20,000 files
    excluded: (rel) => rel !== "" && ig.ignores(ancestorAt(rel, deepest)),
    reason: (rel) => {
      if (rel === "" || !ig.ignores(rel)) return undefined;
      // the last pattern that matches decides; report that one
      for (let i = patterns.length - 1; i >= 0; i--) {
        const p = patterns[i]!;
        if (p.startsWith("!")) continue;
        if (dockerignore({ ignorecase: false }).add(p).ignores(rel))
          return `${file ?? ".dockerignore"}: ${p}`;
      }
      return file ?? ".dockerignore";
    },
  };
}

/**
 * How many path components the deepest path a rule can match has; Infinity when a rule can
 * match at any depth (`**`) or may match a `/` otherwise (a character class, an escape). Counts
 * the components of the rule as written (a leading or trailing slash counts one more): more
 * than the matcher's own count is safe, fewer would not be.
 */
function deepestMatch(patterns: readonly string[]): number {
  let deepest = 1;
  for (const p of patterns) {
    const rule = normalize(p.startsWith("!") ? p.slice(1) : p);
    if (/\*\*|\[|\\/.test(rule)) return Infinity;
    deepest = Math.max(deepest, rule.split("/").length);
  }
  return deepest;
}

/** `rel` cut to its first `depth` components (itself when it has no more). */
function ancestorAt(rel: string, depth: number): string {
  let at = -1;
  for (let n = 0; n < depth; n++) {
    at = rel.indexOf("/", at + 1);
    if (at < 0) return rel;
  }
  return rel.slice(0, at);
}

/** Loads the ignore rules for a build: `<dockerfile>.dockerignore` next to it, else `<ctx>/.dockerignore`. */
export async function loadContextFilter(
  contextDir: string,
  dockerfilePath?: string,
): Promise<ContextFilter> {
  const candidates: string[] = [];
  if (dockerfilePath)
    candidates.push(join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`));
  candidates.push(join(contextDir, ".dockerignore"));
  for (const f of candidates) {
    let text: string;
    try {
      text = await readFile(f, "utf8");
    } catch {
      continue;
    }
    return makeFilter(parseIgnoreFile(text), basename(f));
  }
  return makeFilter([], undefined);
}

/**
 * Whether the ignore rules hide anything that exists under `path` (relative to the context) —
 * what a bind mount of that path must then leave out. Stops at the first hidden entry.
 */
export async function hidesAnythingUnder(
  contextDir: string,
  filter: ContextFilter,
  path: string,
): Promise<boolean> {
  if (filter.patterns.length === 0) return false;
  const start = cleanInRoot(path).slice(1);
  if (start !== "" && filter.excluded(start)) return true;
  const walk = async (rel: string): Promise<boolean> => {
    let entries;
    try {
      entries = readdirSync(join(contextDir, rel), { withFileTypes: true });
    } catch {
      return false; // not a directory (or gone): nothing below it
    }
    for (const e of entries) {
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      if (filter.excluded(child)) return true;
      if (e.isDirectory() && (await walk(child))) return true;
    }
    return false;
  };
  return walk(start);
}

/**
 * Content hashes of one context's files by identity (device, inode, size, mtime and ctime: any
 * change to a file gives it a new key), so an unchanged context is not re-read. Each context
 * has its own file: a build loads the hashes of the contexts it reads, not of every context
 * ever built, and a save keeps only the entries this process used (a changed file's old entry
 * goes away).
 *
 * The file is a line `<key> <sha256 hex>` per file, in the order the build that saved it walked
 * them. The next walk of an unchanged context meets its files in that order, so each lookup is
 * a comparison at a cursor in the file's text: no map of 20,000 entries is built (parsing one
 * cost ~50 ms, JSON twice that). A key not at the cursor is looked up in a map of the whole
 * file, made on that first miss, which also puts the cursor back in step.
 */
interface ContextHashes {
  file: string | undefined;
  /** the saved file's text ("" when there is none) */
  saved: string;
  /** where in `saved` the line of the next file walked is expected */
  cursor: number;
  /** offset in `saved` of each key's hash, made on the first lookup the cursor misses */
  offsets: Map<string, number> | undefined;
  /** looked up or hashed by this process: what a save writes */
  used: Map<string, string>;
  changed: boolean;
}

/** The length of a sha256 in hex, as the cache file holds it. */
const HEX_LENGTH = 64;

let hashCacheDir: string | undefined;
const contextHashes = new Map<string, Promise<ContextHashes>>();

/**
 * Keeps file-hash caches in `dir` (a context's is loaded when a checksum first needs it), so a
 * rebuild of a large unchanged context stats its files instead of reading them.
 */
export function useHashCache(dir: string): void {
  if (dir === hashCacheDir) return;
  hashCacheDir = dir;
  contextHashes.clear();
}

function hashesOf(contextDir: string): Promise<ContextHashes> {
  const dir = resolve(contextDir);
  let hashes = contextHashes.get(dir);
  if (hashes === undefined) {
    hashes = loadHashes(dir);
    contextHashes.set(dir, hashes);
  }
  return hashes;
}

async function loadHashes(contextDir: string): Promise<ContextHashes> {
  const name = createHash("sha256").update(contextDir).digest("hex").slice(0, 32);
  const file = hashCacheDir === undefined ? undefined : join(hashCacheDir, `${name}.hashes`);
  let saved = "";
  try {
    // keys and hex digests are ASCII: a one-byte string, sliced without copies
    if (file !== undefined) saved = await readFile(file, "latin1");
  } catch {
    // none yet: hashing is always correct
  }
  return hashesFrom(file, saved);
}

/** Hashes known from a saved file's text (none: "", and no file to save to). */
function hashesFrom(file: string | undefined, saved: string): ContextHashes {
  return { file, saved, cursor: 0, offsets: undefined, used: new Map(), changed: false };
}

/**
 * The saved hash of `key`, if any. Only whole lines count: a file torn by a crash loses its
 * last line, not its meaning.
 */
function savedHash(hashes: ContextHashes, key: string): string | undefined {
  const s = hashes.saved;
  const at = hashes.cursor + key.length + 1;
  let hashAt: number | undefined;
  if (
    s.startsWith(key, hashes.cursor) &&
    s.charCodeAt(at - 1) === 0x20 &&
    s.charCodeAt(at + HEX_LENGTH) === 0x0a
  ) {
    hashAt = at;
  } else {
    hashes.offsets ??= savedOffsets(s);
    hashAt = hashes.offsets.get(key);
    if (hashAt === undefined) return undefined;
  }
  hashes.cursor = hashAt + HEX_LENGTH + 1;
  return s.slice(hashAt, hashAt + HEX_LENGTH);
}

/** Where each key's hash starts in the saved text (whole, well-formed lines only). */
function savedOffsets(s: string): Map<string, number> {
  const out = new Map<string, number>();
  for (let line = 0; line < s.length;) {
    const end = s.indexOf("\n", line);
    if (end < 0) break;
    const space = end - HEX_LENGTH - 1;
    if (space > line && s.charCodeAt(space) === 0x20) out.set(s.slice(line, space), space + 1);
    line = end + 1;
  }
  return out;
}

/** Saves (atomically) the cache of each context in which this process hashed something new. */
export async function saveHashCache(): Promise<void> {
  for (const pending of contextHashes.values()) {
    const hashes = await pending;
    if (!hashes.changed || hashes.file === undefined) continue;
    // a daemon's concurrent builds may save the same context's file at once
    const tmp = `${hashes.file}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
    let text = "";
    for (const [key, hash] of hashes.used) text += `${key} ${hash}\n`;
    await writeFile(tmp, text, "latin1");
    await rename(tmp, hashes.file);
    hashes.changed = false;
  }
}

/** Walk lines are hashed in strings of about this length: one call each, not one per line. */
const HASH_BATCH = 64 * 1024;

/** Read size when a file's content is hashed (one buffer, reused for every file). */
const READ_BYTES = 1 << 20;
let readBuffer: Buffer | undefined;
/** How long hashing may hold kiln's thread before other work gets a turn. */
const HASH_SLICE_MS = 20;

/**
 * A file's sha256, read synchronously through one reused buffer: on this kind of machine a
 * fresh buffer per file (readFile) costs page faults on new memory and four thread-pool round
 * trips per file, 2–3× the time (1 GiB in 20,000 files: 3.4 s against 1.1 s).
 */
function hashFile(hashes: ContextHashes, path: string, key: string): string {
  // another checksum of this build may have read it already
  const known = hashes.used.get(key);
  if (known) return known;
  const h = createHash("sha256");
  const buf = (readBuffer ??= Buffer.allocUnsafeSlow(READ_BYTES));
  // The walk saw a regular file here. A symlink swapped in since is not followed, and a FIFO
  // neither blocks the open (O_NONBLOCK) nor is read.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) {
      throw new KilnError("E_CONTEXT", `${path} stopped being a regular file while it was read`, {
        hint: "nothing may change the build context while a build reads it",
      });
    }
    for (let pos = 0, n; (n = readSync(fd, buf, 0, buf.length, pos)) > 0; pos += n)
      h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  hashes.changed = true;
  return h.digest("hex");
}

/**
 * A checksum of what `paths` (relative, possibly with wildcards) select in the context: names,
 * types, modes, link targets and file contents — not mtimes or owners, like BuildKit's keys (a
 * COPY from the context gives every file to root). A selected path that is a symlink counts as
 * what it points to (in the context), as COPY copies that.
 */
export async function contextChecksum(
  contextDir: string,
  filter: ContextFilter,
  paths: readonly string[],
): Promise<string> {
  return checksumTree(resolve(contextDir), filter, paths, await hashesOf(contextDir), false);
}

/**
 * A checksum of what `paths` select under `root`, a step's result (a COPY --from's source, a
 * read-only mount of a stage): as contextChecksum, and owners too, which a COPY --from keeps.
 * Its files are read each time (their identities are those of a throwaway view).
 */
export function resultChecksum(root: string, paths: readonly string[]): Promise<string> {
  const none = hashesFrom(undefined, "");
  return checksumTree(resolve(root), makeFilter([], undefined), paths, none, true);
}

/**
 * The walk both checksums share: the lines of every selected entry in walk order, hashed.
 * The walk's metadata calls are synchronous: each takes microseconds, while an awaited one
 * costs a thread-pool round trip, and a rebuild of an unchanged context is nothing but those.
 * File contents are read only when `hashes` has no entry, one file after the other in walk
 * order, with a turn for kiln's other work every HASH_SLICE_MS.
 */
async function checksumTree(
  root: string,
  filter: ContextFilter,
  paths: readonly string[],
  hashes: ContextHashes,
  owners: boolean,
): Promise<string> {
  const h = createHash("sha256");
  // Lines are hashed in walk order. Until a file needs its content read, each line is hashed
  // at once (a rebuild of an unchanged context keeps no list), a batch of lines per call; from
  // then on they wait here: a line, or a file whose line needs its content hash.
  // A file line waits with its hash when it is known (so that the cache keeps walk order), else
  // with what reading it needs.
  const lines: (
    string | { rel: string; meta: string; host: string; key: string; known?: string }
  )[] = [];
  let batch = "";
  const emit = (l: string): void => {
    if (lines.length > 0) lines.push(l);
    else if ((batch += l).length >= HASH_BATCH) {
      h.update(batch);
      batch = "";
    }
  };
  const wait = (l: (typeof lines)[number]): void => {
    h.update(batch);
    batch = "";
    lines.push(l);
  };
  // what a line says of an entry besides its name (and content)
  const meta = (st: Stats): string =>
    owners ? `${st.mode & 0o7777} ${st.uid}:${st.gid}` : `${st.mode & 0o7777}`;
  // rel is clean: a plain concatenation (join would normalize each of 20,000 paths again)
  const visit = (rel: string): void => {
    const host = rel === "" ? root : `${root}/${rel}`;
    // not bigint: the key's times in float milliseconds still tell apart every change a
    // file-system clock can show, and a walk of 20,000 files allocates much less
    let st;
    try {
      st = lstatSync(host);
    } catch {
      emit(`missing ${rel}\n`);
      return;
    }
    if (st.isSymbolicLink()) {
      // where owners count, a link's owner does too (COPY --from keeps it)
      emit(`l ${rel} ${owners ? `${meta(st)} ` : ""}${readlinkSync(host)}\n`);
    } else if (st.isDirectory()) {
      emit(`d ${rel} ${meta(st)}\n`);
      for (const name of readdirSync(host).sort()) {
        const child = rel === "" ? name : `${rel}/${name}`;
        if (filter.excluded(child)) {
          if (!filter.patterns.some((p) => p.startsWith("!"))) continue;
          // an exception may re-include something below an excluded directory
          const cst = lstatSync(join(host, name));
          if (!cst.isDirectory()) continue;
        }
        visit(child);
      }
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      const known = hashes.used.get(key) ?? savedHash(hashes, key);
      if (known && lines.length === 0) {
        hashes.used.set(key, known);
        emit(`f ${rel} ${meta(st)} ${known}\n`);
      } else wait({ rel, meta: meta(st), host, key, known });
    } else {
      emit(`o ${rel} ${meta(st)}\n`);
    }
  };
  // A selected path is what COPY copies: its symlinks, the last one too, resolved in the root.
  const selected = (rel: string): string =>
    relative(root, resolveInRootSync(root, rel, { followFinal: true }));
  for (const p of paths) {
    // no trailing slash: child paths are joined to it and matched against .dockerignore
    const clean = cleanInRoot(p).slice(1).replace(/\/+$/, "");
    if (!hasWildcard(clean)) {
      if (clean !== "" && filter.excluded(clean)) emit(`excluded ${clean}\n`);
      else visit(selected(clean));
      continue;
    }
    // as COPY: the directory before the first wildcard is resolved, then searched
    const { dir, pattern } = splitWildcards(clean);
    const base = selected(dir);
    const match = compileGlob(pattern);
    const walk = (rel: string): void => {
      const at = rel === "" ? base : join(base, rel);
      let names: string[];
      try {
        names = readdirSync(join(root, at)).sort();
      } catch {
        return;
      }
      for (const name of names) {
        const child = rel === "" ? name : `${rel}/${name}`;
        const real = at === "" ? name : `${at}/${name}`;
        if (filter.excluded(real)) continue;
        if (match(child)) visit(selected(real));
        else if (lstatSync(join(root, real)).isDirectory()) walk(child);
      }
    };
    walk("");
  }
  h.update(batch);
  let slice = performance.now();
  for (const line of lines) {
    if (typeof line === "string") {
      h.update(line);
      continue;
    }
    if (line.known === undefined && performance.now() - slice > HASH_SLICE_MS) {
      await new Promise(setImmediate);
      slice = performance.now();
    }
    const digest = line.known ?? hashFile(hashes, line.host, line.key);
    // in walk order (not as reads finish): the order the next walk's lookups expect
    hashes.used.set(line.key, digest);
    h.update(`f ${line.rel} ${line.meta} ${digest}\n`);
  }
  return "sha256:" + h.digest("hex");
}
