/**
 * COPY/ADD semantics against real files, as root: one table of cases, each run on a fresh
 * destination rootfs from a shared build context (with a .dockerignore filter) and a shared
 * "stage" source. The expectations are BuildKit's (dockerfile2llb + fsutil copy).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAttribute, setAttribute } from "@napi-rs/xattr";
import { encodeTar, type TarEntry } from "../../src/archive/index.js";
import {
  compilePatterns,
  copyInto,
  parseChmod,
  resolveOwner,
  type CopyRequest,
  type CopySource,
} from "../../src/fileops/index.js";
import { isKilnError } from "../../src/errors.js";

const MTIME = 1_000_000_000;

let sandbox: string;
let ctx: string;
let stage: string;
let context: CopySource;
let stageSource: CopySource;

async function put(root: string, rel: string, data: string, mode = 0o644): Promise<void> {
  const p = join(root, rel);
  await mkdir(join(p, ".."), { recursive: true });
  await writeFile(p, data);
  await chmod(p, mode);
}

function entry(over: Partial<TarEntry> & { name: string }): TarEntry {
  return { type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: MTIME, xattrs: {}, ...over };
}

async function writeTar(path: string, entries: [TarEntry, string?][]): Promise<void> {
  const inputs = entries.map(([e, body]) =>
    body === undefined
      ? { entry: e }
      : { entry: { ...e, size: Buffer.byteLength(body) }, body: Buffer.from(body) },
  );
  await pipeline(Readable.from(encodeTar(inputs)), createWriteStream(path));
}

before(async () => {
  sandbox = await mkdtemp(join(tmpdir(), "kiln-fileops-it-"));
  ctx = join(sandbox, "ctx");
  stage = join(sandbox, "stage");
  await put(ctx, "a.txt", "A");
  await utimes(join(ctx, "a.txt"), MTIME, MTIME);
  await put(ctx, "b.txt", "B", 0o600);
  await put(ctx, "c.md", "C");
  await put(ctx, "run.sh", "S", 0o755);
  for (const n of ["f1", "f2", "fa"]) await put(ctx, `${n}.log`, n);
  await put(ctx, "dir/x.txt", "X");
  await put(ctx, "dir/sub/y.txt", "Y");
  await put(ctx, "dir/sub/z.go", "Z");
  await chmod(join(ctx, "dir"), 0o750);
  await chmod(join(ctx, "dir/sub"), 0o700);
  await symlink("x.txt", join(ctx, "dir/link-rel"));
  await symlink("/etc/passwd", join(ctx, "dir/evil"));
  await put(ctx, "hl/one", "H");
  await link(join(ctx, "hl/one"), join(ctx, "hl/two"));
  await symlink("a.txt", join(ctx, "link-to-a"));
  await symlink("dir", join(ctx, "link-to-dir"));
  await symlink("/etc/passwd", join(ctx, "outside"));
  await symlink("../../../../../../../etc/passwd", join(ctx, "outside-rel"));
  await put(ctx, "foo1/foo2/bar", "bar");
  await put(ctx, "foo1/foo2/baz", "baz");
  await put(ctx, "test/a/b/c/d/foo", "foo");
  await put(ctx, "test/a/b/c/d/e/bay", "bay");
  await put(ctx, "test/a/b2/c/d/e/bar", "bar2");
  await put(ctx, "secret/key", "K");
  await put(ctx, "secret/public.txt", "P");
  await put(ctx, "ignored.log", "I");
  await put(ctx, "xa.txt", "XA");
  await setAttribute(join(ctx, "xa.txt"), "user.kiln", "yes");
  // files in a context belong to whoever checked them out: the copy must not care
  await chown(join(ctx, "run.sh"), 4321, 4321);

  // archives made by GNU tar, owners 1234:5678
  const src = join(sandbox, "arch-src");
  await put(src, "top.txt", "T", 0o640);
  await put(src, "d/inner.txt", "IN", 0o600);
  await chmod(join(src, "d"), 0o750);
  await symlink("top.txt", join(src, "ln"));
  await mkdir(join(ctx, "arch"));
  const tarArgs = ["--numeric-owner", "--owner=1234", "--group=5678", "-C", src];
  const make = (file: string, ...flags: string[]) =>
    execFileSync("tar", [...tarArgs, ...flags, "-cf", join(ctx, "arch", file), "."]);
  make("x.tar");
  make("x.tgz", "-z");
  make("x.tbz2", "-j");
  make("x.txz", "-J");
  make("x.tzst", "--zstd");
  make("disguised.txt", "-z");
  execFileSync("sh", ["-c", `printf 'just text' | gzip > ${join(ctx, "arch/plain.gz")}`]);
  await writeTar(join(ctx, "arch/dotdot.tar"), [
    [entry({ name: "ok.txt" }), "ok"],
    [entry({ name: "../escape.txt" }), "pwned"],
  ]);
  await mkdir(join(sandbox, "outside-dir"));
  await writeTar(join(ctx, "arch/planted.tar"), [
    [entry({ name: "evil", type: "symlink", linkname: join(sandbox, "outside-dir") })],
    [entry({ name: "evil/pwned" }), "pwned"],
  ]);
  await writeTar(join(ctx, "arch/planted-rel.tar"), [
    [entry({ name: "up", type: "symlink", linkname: "../../.." })],
    [entry({ name: "up/pwned" }), "pwned"],
  ]);
  await mkdir(join(sandbox, "outside-dir/sub"));
  await chmod(join(sandbox, "outside-dir/sub"), 0o700);
  await writeTar(join(ctx, "arch/swapped.tar"), [
    [entry({ name: "a/", type: "dir", mode: 0o755 })],
    [entry({ name: "a/sub/", type: "dir", mode: 0o777, mtime: 0 })],
    [entry({ name: "a", type: "symlink", linkname: join(sandbox, "outside-dir") })],
  ]);
  await writeTar(join(ctx, "arch/absname.tar"), [
    [entry({ name: "/abs/file.txt", uid: 7, gid: 8 }), "abs"],
    [entry({ name: "lib/x.so" }), "so"],
  ]);

  const ignore = compilePatterns(["secret", "!secret/public.txt", "ignored.log"])!;
  const excluded = (rel: string) => ignore.match(rel, undefined).matched;
  context = {
    root: ctx,
    label: "build context",
    excluded,
    exclusionReason: (rel) => (excluded(rel) ? ".dockerignore" : undefined),
    ownerOverride: { uid: 0, gid: 0 },
  };

  await put(stage, "app/bin/tool", "T", 0o755);
  await put(stage, "app/etc/conf", "C", 0o640);
  execFileSync("chown", ["-R", "1234:5678", join(stage, "app")]);
  stageSource = { root: stage, label: '"build"' };
});

after(async () => {
  await rm(sandbox, { recursive: true, force: true });
});

/** Every path under root: dirs end in "/", symlinks in "@". */
async function tree(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, rel))).sort()) {
    const r = `${rel}/${name}`;
    const st = await lstat(join(root, r));
    if (st.isDirectory()) out.push(`${r}/`, ...(await tree(root, r)));
    else out.push(st.isSymbolicLink() ? `${r}@` : r);
  }
  return out;
}

async function meta(path: string): Promise<string> {
  const st = await lstat(path);
  return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
}

type Req = Partial<CopyRequest> & { src: string; dest: string; chown?: string; chmod?: string };

interface Case {
  name: string;
  req: Req | Req[];
  source?: "stage";
  setup?: (dest: string) => Promise<void>;
  /** exact listing of the destination afterwards */
  tree?: string[];
  files?: Record<string, string>;
  check?: (dest: string) => Promise<void>;
  error?: { code: string; message?: RegExp };
}

/** The FileOp copy a Dockerfile COPY becomes (ADD adds unpack). */
async function run(dest: string, source: CopySource, r: Req): Promise<void> {
  const { chown: chownSpec, chmod: chmodSpec, ...rest } = r;
  await copyInto(dest, source, {
    dirContents: true,
    allowWildcard: true,
    allowEmptyWildcard: true,
    excludes: [],
    parents: false,
    owner: chownSpec === undefined ? undefined : await resolveOwner(dest, chownSpec),
    mode: chmodSpec === undefined ? undefined : parseChmod(chmodSpec),
    ...rest,
  });
}

const DIR_TREE = [
  "/out/",
  "/out/evil@",
  "/out/link-rel@",
  "/out/sub/",
  "/out/sub/y.txt",
  "/out/sub/z.go",
  "/out/x.txt",
];
const ARCHIVE_TREE = ["/x/", "/x/d/", "/x/d/inner.txt", "/x/ln@", "/x/top.txt"];

const cases: Case[] = [
  // destination rules
  {
    name: "file to a new path is that file",
    req: { src: "a.txt", dest: "/out.txt" },
    tree: ["/out.txt"],
    files: { "/out.txt": "A" },
  },
  {
    name: "file to a path ending in / goes inside it",
    req: { src: "a.txt", dest: "/d/" },
    tree: ["/d/", "/d/a.txt"],
  },
  {
    name: "file to /. form goes inside",
    req: { src: "a.txt", dest: "/d/." },
    tree: ["/d/", "/d/a.txt"],
  },
  {
    name: "file to an existing directory (no slash) goes inside",
    setup: (d) => mkdir(join(d, "exist")),
    req: { src: "a.txt", dest: "/exist" },
    tree: ["/exist/", "/exist/a.txt"],
  },
  {
    name: "file over an existing file replaces it",
    setup: (d) => put(d, "f", "old", 0o600),
    req: { src: "a.txt", dest: "/f" },
    files: { "/f": "A" },
    check: async (d) => {
      assert.equal(await meta(join(d, "f")), "644 0:0");
    },
  },
  {
    name: "missing parents are created 0755 root-owned",
    req: { src: "a.txt", dest: "/p/q/r.txt" },
    tree: ["/p/", "/p/q/", "/p/q/r.txt"],
    check: async (d) => {
      assert.equal(await meta(join(d, "p/q")), "755 0:0");
    },
  },
  {
    name: "destination through a symlinked directory lands in its target inside the root",
    setup: async (d) => {
      await mkdir(join(d, "real"));
      await symlink("/real", join(d, "link"));
    },
    req: { src: "a.txt", dest: "/link/" },
    tree: ["/link@", "/real/", "/real/a.txt"],
  },
  {
    name: "destination that is a symlink to a file replaces the link's target",
    setup: async (d) => {
      await put(d, "target.txt", "old");
      await symlink("/target.txt", join(d, "t"));
    },
    req: { src: "a.txt", dest: "/t" },
    tree: ["/t@", "/target.txt"],
    files: { "/target.txt": "A" },
  },
  {
    name: "file onto an existing directory entry inside a tree is an error",
    setup: async (d) => {
      await mkdir(join(d, "out/x.txt"), { recursive: true });
    },
    req: { src: "dir", dest: "/out" },
    error: { code: "E_COPY_DEST", message: /cannot replace directory \/out\/x.txt/ },
  },
  // directory sources
  { name: "a directory copies its contents", req: { src: "dir", dest: "/out" }, tree: DIR_TREE },
  {
    name: "a directory merges into an existing one, keeping what was there",
    setup: (d) => put(d, "out/sub/old", "old"),
    req: { src: "dir/", dest: "/out/" },
    tree: [...DIR_TREE.slice(0, 4), "/out/sub/old", ...DIR_TREE.slice(4)],
    check: async (d) => {
      assert.equal(await meta(join(d, "out/sub")), "700 0:0");
    },
  },
  {
    name: "a directory over an existing file is an error",
    setup: (d) => put(d, "out", "file"),
    req: { src: "dir", dest: "/out" },
    error: { code: "E_COPY_DEST", message: /cannot copy to non-directory: \/out/ },
  },
  {
    name: "a directory over an image symlink inside the tree is an error, as in BuildKit",
    setup: async (d) => {
      await mkdir(join(d, "usr/sub"), { recursive: true });
      await mkdir(join(d, "out"));
      await symlink("/usr/sub", join(d, "out/sub"));
    },
    req: { src: "dir", dest: "/out" },
    error: { code: "E_COPY_DEST", message: /non-directory: \/out\/sub/ },
  },
  {
    name: "without dirContents a directory is copied as itself into an existing dir",
    setup: (d) => mkdir(join(d, "out")),
    req: { src: "dir", dest: "/out", dirContents: false },
    check: async (d) => {
      assert.equal(await readFile(join(d, "out/dir/sub/y.txt"), "utf8"), "Y");
    },
  },
  {
    name: "the new top directory is 0755 with the source's mtime; subdirectories keep their mode",
    req: { src: "dir", dest: "/out" },
    check: async (d) => {
      assert.equal(await meta(join(d, "out")), "755 0:0");
      // Node's utimes carries microseconds, not nanoseconds
      const got = (await stat(join(d, "out"))).mtimeMs;
      assert.ok(Math.abs(got - (await stat(join(ctx, "dir"))).mtimeMs) < 0.01);
      assert.equal(await meta(join(d, "out/sub")), "700 0:0");
    },
  },
  {
    name: "the context root (.) copies everything not ignored",
    req: { src: ".", dest: "/all/" },
    check: async (d) => {
      const t = await tree(d);
      assert.ok(t.includes("/all/a.txt") && t.includes("/all/secret/public.txt"));
      assert.ok(!t.includes("/all/ignored.log") && !t.includes("/all/secret/key"));
    },
  },
  // wildcards
  {
    name: "* matches files in one directory level",
    req: { src: "*.txt", dest: "/w/" },
    tree: ["/w/", "/w/a.txt", "/w/b.txt", "/w/xa.txt"],
  },
  {
    name: "a wildcard with one match and no slash names the file",
    req: { src: "c.*", dest: "/single" },
    tree: ["/single"],
    files: { "/single": "C" },
  },
  {
    name: "several matches to a path without a slash overwrite one file (BuildKit does not refuse)",
    req: { src: "*.txt", dest: "/w" },
    tree: ["/w"],
    files: { "/w": "XA" },
  },
  {
    name: "? matches one character",
    req: { src: "f?.log", dest: "/w/" },
    tree: ["/w/", "/w/f1.log", "/w/f2.log", "/w/fa.log"],
  },
  {
    name: "[0-9] classes",
    req: { src: "f[0-9].log", dest: "/w/" },
    tree: ["/w/", "/w/f1.log", "/w/f2.log"],
  },
  {
    name: "[^0-9] negated classes",
    req: { src: "f[^0-9].log", dest: "/w/" },
    tree: ["/w/", "/w/fa.log"],
  },
  {
    name: "** is a plain * in COPY sources: no match is a no-op",
    req: { src: "**/*.go", dest: "/g/" },
    tree: [],
  },
  {
    name: "wildcards in several segments",
    req: { src: "dir/*/*.go", dest: "/g/" },
    tree: ["/g/", "/g/z.go"],
  },
  {
    name: "a wildcard matching a directory copies its contents",
    req: { src: "di?", dest: "/out/" },
    tree: DIR_TREE,
  },
  {
    name: "an empty wildcard is an error when not allowed",
    req: { src: "*.nothing", dest: "/w/", allowEmptyWildcard: false },
    error: { code: "E_COPY_NOT_FOUND" },
  },
  {
    name: "a wildcard below a missing directory names it",
    req: { src: "nope/*.txt", dest: "/w/" },
    error: { code: "E_COPY_NOT_FOUND", message: /"\/nope": not found/ },
  },
  {
    name: "without allowWildcard * is a literal name",
    req: { src: "*.txt", dest: "/w/", allowWildcard: false },
    error: { code: "E_COPY_NOT_FOUND", message: /"\/\*\.txt"/ },
  },
  // missing and ignored sources
  {
    name: "a missing source is an error naming the path",
    req: { src: "missing.txt", dest: "/" },
    error: { code: "E_COPY_NOT_FOUND", message: /"\/missing.txt": not found in build context/ },
  },
  {
    name: "a .dockerignore'd source is an error naming the rule",
    req: { src: "secret/key", dest: "/k" },
    error: { code: "E_COPY_NOT_FOUND", message: /excluded by \.dockerignore/ },
  },
  {
    name: "an ignored directory shows only what an exception re-includes",
    req: { src: "secret", dest: "/s" },
    tree: ["/s/", "/s/public.txt"],
  },
  {
    name: "wildcards never match ignored files",
    req: { src: "*.log", dest: "/w/" },
    tree: ["/w/", "/w/f1.log", "/w/f2.log", "/w/fa.log"],
  },
  // symlinks
  {
    name: "a symlink named as the source is followed (the copy is a file named like the link)",
    req: [
      { src: "link-to-a", dest: "/l" },
      { src: "link-to-a", dest: "/ld/" },
    ],
    tree: ["/l", "/ld/", "/ld/link-to-a"],
    files: { "/l": "A", "/ld/link-to-a": "A" },
  },
  {
    name: "a symlink to a directory named as the source copies the directory",
    req: { src: "link-to-dir", dest: "/out" },
    tree: DIR_TREE,
  },
  {
    name: "an absolute symlink out of the context is resolved inside it, never on the host",
    req: { src: "outside", dest: "/o" },
    error: { code: "E_COPY_NOT_FOUND", message: /"\/outside"/ },
  },
  {
    name: "a relative symlink climbing out of the context stays inside it",
    req: { src: "outside-rel", dest: "/o" },
    error: { code: "E_COPY_NOT_FOUND" },
  },
  {
    name: "symlinks inside a copied directory stay links with their targets",
    req: { src: "dir", dest: "/out" },
    check: async (d) => {
      assert.equal(await readlink(join(d, "out/evil")), "/etc/passwd");
      assert.equal(await readlink(join(d, "out/link-rel")), "x.txt");
      assert.equal(await meta(join(d, "out/evil")).then((m) => m.split(" ")[1]), "0:0");
    },
  },
  // hardlinks, metadata
  {
    name: "hardlinks within one source stay hardlinks",
    req: { src: "hl", dest: "/h" },
    check: async (d) => {
      assert.equal((await stat(join(d, "h/one"))).ino, (await stat(join(d, "h/two"))).ino);
    },
  },
  {
    name: "separate wildcard matches are separate copies (no hardlink between them)",
    req: { src: "hl/*", dest: "/h/" },
    check: async (d) => {
      assert.notEqual((await stat(join(d, "h/one"))).ino, (await stat(join(d, "h/two"))).ino);
    },
  },
  {
    name: "context files become root-owned, keep their mode, mtime and xattrs",
    req: [
      { src: "run.sh", dest: "/bin/" },
      { src: "a.txt", dest: "/bin/" },
      { src: "xa.txt", dest: "/bin/" },
    ],
    check: async (d) => {
      assert.equal(await meta(join(d, "bin/run.sh")), "755 0:0");
      assert.equal((await stat(join(d, "bin/a.txt"))).mtimeMs, MTIME * 1000);
      assert.equal((await getAttribute(join(d, "bin/xa.txt"), "user.kiln"))?.toString(), "yes");
    },
  },
  {
    name: "files from a stage keep their owners",
    source: "stage",
    req: { src: "/app", dest: "/app" },
    check: async (d) => {
      assert.equal(await meta(join(d, "app/bin/tool")), "755 1234:5678");
      assert.equal(await meta(join(d, "app/etc")), "755 1234:5678");
    },
  },
  // --chown / --chmod
  {
    name: "--chown by name uses the destination's passwd/group, created parents too",
    setup: async (d) => {
      await put(d, "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n");
      await put(d, "etc/group", "root:x:0:\nstaff:x:50:\n");
    },
    req: { src: "dir", dest: "/home/app/src", chown: "app:staff" },
    check: async (d) => {
      assert.equal(await meta(join(d, "home")), "755 1000:50");
      assert.equal(await meta(join(d, "home/app/src/sub/y.txt")), "644 1000:50");
      assert.equal((await lstat(join(d, "home/app/src/evil"))).uid, 1000);
    },
  },
  {
    name: "--chown with a numeric user sets the group to the same number",
    source: "stage",
    req: { src: "/app/bin/tool", dest: "/t", chown: "42" },
    check: async (d) => {
      assert.equal(await meta(join(d, "t")), "755 42:42");
    },
  },
  {
    name: "--chown with an unknown name owns the copy by root, as BuildKit",
    req: { src: "a.txt", dest: "/", chown: "ghost" },
    check: async (d) => {
      assert.match(await meta(join(d, "a.txt")), / 0:0$/);
    },
  },
  {
    name: "--chmod octal applies to files, copied dirs and created parents (BuildKit quirk)",
    req: { src: "dir", dest: "/m/out", chmod: "0750" },
    check: async (d) => {
      assert.equal(await meta(join(d, "m")), "750 0:0");
      assert.equal(await meta(join(d, "m/out/x.txt")), "750 0:0");
      assert.equal(await meta(join(d, "m/out/sub")), "750 0:0");
    },
  },
  {
    name: "--chmod symbolic applies per file; created parents stay 0755",
    req: [
      { src: "a.txt", dest: "/m/", chmod: "u+x,g-r" },
      { src: "run.sh", dest: "/m/", chmod: "go-rx" },
    ],
    check: async (d) => {
      assert.equal(await meta(join(d, "m")), "755 0:0");
      assert.equal(await meta(join(d, "m/a.txt")), "704 0:0");
      assert.equal(await meta(join(d, "m/run.sh")), "700 0:0");
    },
  },
  // --exclude
  {
    name: "--exclude drops matching paths below the source",
    req: { src: "dir", dest: "/out", excludes: ["**/*.go", "evil"] },
    tree: ["/out/", "/out/link-rel@", "/out/sub/", "/out/sub/y.txt", "/out/x.txt"],
  },
  {
    name: "--exclude with an exception re-includes inside an excluded directory",
    req: { src: "dir", dest: "/out", excludes: ["sub", "!sub/y.txt"] },
    tree: ["/out/", "/out/evil@", "/out/link-rel@", "/out/sub/", "/out/sub/y.txt", "/out/x.txt"],
  },
  {
    name: "--exclude matches below each wildcard match, not the match itself (fsutil)",
    req: [
      { src: "di*", dest: "/e/", excludes: ["*.txt", "sub"] },
      { src: "*.txt", dest: "/e2/", excludes: ["a.txt"] },
    ],
    tree: ["/e/", "/e/evil@", "/e/link-rel@", "/e2/", "/e2/a.txt", "/e2/b.txt", "/e2/xa.txt"],
  },
  // --parents
  {
    name: "--parents keeps the full path",
    req: { src: "foo1/foo2/bar", dest: "/", parents: true },
    tree: ["/foo1/", "/foo1/foo2/", "/foo1/foo2/bar"],
  },
  {
    name: "--parents with a wildcard",
    req: { src: "foo1/foo2/ba*", dest: "/test/", parents: true },
    tree: [
      "/test/",
      "/test/foo1/",
      "/test/foo1/foo2/",
      "/test/foo1/foo2/bar",
      "/test/foo1/foo2/baz",
    ],
  },
  {
    name: "--parents keeps only the part after the ./ pivot",
    req: { src: "test/a/b/./c/d", dest: "/out/", parents: true },
    tree: ["/out/", "/out/c/", "/out/c/d/", "/out/c/d/e/", "/out/c/d/e/bay", "/out/c/d/foo"],
  },
  {
    name: "--parents with wildcards on both sides of the pivot and **",
    req: { src: "test/a/b*/./c/**/e", dest: "/out/", parents: true },
    tree: ["/out/", "/out/c/", "/out/c/d/", "/out/c/d/e/", "/out/c/d/e/bar", "/out/c/d/e/bay"],
  },
  {
    name: "--parents of a missing path is an error",
    req: { src: "test/nonexistent-file", dest: "/out/", parents: true },
    error: { code: "E_COPY_NOT_FOUND", message: /"\/test\/nonexistent-file"/ },
  },
  {
    name: "--parents wildcard matching nothing leaves only the destination",
    req: { src: "test/a/zz*/c", dest: "/out/", parents: true },
    tree: ["/out/"],
  },
  // ADD archives
  ...["x.tar", "x.tgz", "x.tbz2", "x.txz", "x.tzst"].map((f): Case => ({
    name: `ADD extracts ${f} keeping the archive's owners and modes`,
    req: { src: `arch/${f}`, dest: "/x", unpack: true },
    tree: ARCHIVE_TREE,
    files: { "/x/d/inner.txt": "IN" },
    check: async (d) => {
      assert.equal(await meta(join(d, "x/top.txt")), "640 1234:5678");
      assert.equal(await meta(join(d, "x/d")), "750 1234:5678");
      // the archive's root entry "./" is the destination itself: it keeps its own owner and mode
      assert.equal(await meta(join(d, "x")), "755 0:0");
      assert.equal(await readlink(join(d, "x/ln")), "top.txt");
    },
  })),
  {
    name: "ADD recognises an archive by content, not by name",
    req: { src: "arch/disguised.txt", dest: "/x/", unpack: true },
    tree: ARCHIVE_TREE,
  },
  {
    name: "ADD copies a compressed non-tar file as it is",
    req: { src: "arch/plain.gz", dest: "/p/", unpack: true },
    tree: ["/p/", "/p/plain.gz"],
  },
  {
    name: "ADD --unpack=false copies the archive file",
    req: { src: "arch/x.tgz", dest: "/p/", unpack: false },
    tree: ["/p/", "/p/x.tgz"],
  },
  {
    name: "ADD --chown owns every extracted entry",
    req: { src: "arch/x.tar", dest: "/x", unpack: true, chown: "7:9" },
    check: async (d) => {
      for (const p of ["x", "x/top.txt", "x/d", "x/d/inner.txt"])
        assert.match(await meta(join(d, p)), / 7:9$/, p);
      assert.equal((await lstat(join(d, "x/ln"))).uid, 7);
    },
  },
  {
    name: "ADD with a wildcard extracts each archive match",
    req: { src: "arch/x.t?z", dest: "/x", unpack: true },
    tree: ARCHIVE_TREE,
  },
  {
    name: "ADD refuses an archive entry climbing out with ..",
    req: { src: "arch/dotdot.tar", dest: "/x/", unpack: true },
    error: { code: "E_ADD_UNSAFE", message: /\.\.\/escape\.txt/ },
    check: async (d) => {
      await assert.rejects(stat(join(d, "..", "escape.txt")));
      await assert.rejects(stat(join(d, "escape.txt")));
    },
  },
  {
    name: "ADD refuses writing through a symlink the archive planted (absolute target)",
    req: { src: "arch/planted.tar", dest: "/x/", unpack: true },
    error: { code: "E_ADD_UNSAFE", message: /own symlink "evil"/ },
    check: async () => {
      assert.deepEqual(await readdir(join(sandbox, "outside-dir")), ["sub"]);
    },
  },
  {
    name: "ADD refuses writing through a planted relative symlink",
    req: { src: "arch/planted-rel.tar", dest: "/x/", unpack: true },
    error: { code: "E_ADD_UNSAFE" },
    check: async () => {
      await assert.rejects(stat(join(sandbox, "..", "pwned")));
    },
  },
  {
    name: "ADD refuses an archive that swaps a listed directory for a symlink (deferred mode and mtime)",
    req: { src: "arch/swapped.tar", dest: "/x/", unpack: true },
    error: { code: "E_ADD_UNSAFE", message: /"a\/sub\/".*replaced "a" with a symlink/ },
    check: async () => {
      const st = await stat(join(sandbox, "outside-dir/sub"));
      assert.equal(st.mode & 0o7777, 0o700);
      assert.notEqual(st.mtimeMs, 0);
    },
  },
  {
    name: "ADD extracts absolute names inside the destination and follows image symlinks there",
    setup: async (d) => {
      await mkdir(join(d, "usr/lib"), { recursive: true });
      await symlink("/usr/lib", join(d, "lib"));
    },
    req: { src: "arch/absname.tar", dest: "/", unpack: true },
    tree: ["/abs/", "/abs/file.txt", "/lib@", "/usr/", "/usr/lib/", "/usr/lib/x.so"],
    check: async (d) => {
      assert.equal(await meta(join(d, "abs/file.txt")), "644 7:8");
    },
  },
];

test("COPY/ADD table", async (t) => {
  assert.ok(cases.length >= 40, `${cases.length} cases`);
  for (const c of cases) {
    await t.test(c.name, async () => {
      const dest = await mkdtemp(join(sandbox, "dest-"));
      try {
        await c.setup?.(dest);
        const source = c.source === "stage" ? stageSource : context;
        const reqs = Array.isArray(c.req) ? c.req : [c.req];
        const work = (async () => {
          for (const r of reqs) await run(dest, source, r);
        })();
        if (c.error) {
          await assert.rejects(work, (e: unknown) => {
            assert.ok(isKilnError(e), `not a KilnError: ${String(e)}`);
            assert.equal(e.code, c.error!.code, e.message);
            if (c.error!.message) assert.match(e.message, c.error!.message);
            return true;
          });
        } else {
          await work;
        }
        if (c.tree) assert.deepEqual(await tree(dest), c.tree);
        for (const [p, want] of Object.entries(c.files ?? {})) {
          assert.equal(await readFile(join(dest, p), "utf8"), want, p);
        }
        await c.check?.(dest);
      } finally {
        await rm(dest, { recursive: true, force: true });
      }
    });
  }
});

test("COPY re-creates FIFOs and device nodes with their mode and numbers", async () => {
  const src = await mkdtemp(join(sandbox, "nodes-src-"));
  const dest = await mkdtemp(join(sandbox, "nodes-dest-"));
  try {
    await mkdir(join(src, "n"));
    execFileSync("mknod", ["-m", "640", join(src, "n/fifo"), "p"]);
    execFileSync("mknod", ["-m", "620", join(src, "n/null"), "c", "1", "3"]);
    // major 259 / minor 0x12345 use dev_t's high bits
    execFileSync("mknod", ["-m", "600", join(src, "n/nvme"), "b", "259", String(0x12345)]);
    await copyInto(
      dest,
      { root: src, label: '"nodes"' },
      {
        src: "n",
        dest: "/out/",
        dirContents: true,
        allowWildcard: false,
        allowEmptyWildcard: false,
        excludes: [],
        parents: false,
      },
    );
    for (const name of ["fifo", "null", "nvme"]) {
      const [a, b] = await Promise.all([
        lstat(join(src, "n", name)),
        lstat(join(dest, "out", name)),
      ]);
      assert.equal(b.mode, a.mode, name);
      assert.equal(b.rdev, a.rdev, name);
    }
    assert.ok((await lstat(join(dest, "out/fifo"))).isFIFO());
    assert.ok((await lstat(join(dest, "out/nvme"))).isBlockDevice());
  } finally {
    await rm(src, { recursive: true, force: true });
    await rm(dest, { recursive: true, force: true });
  }
});

test("COPY . of a build context stamps the destination with the copy's time (BuildKit receives the context afresh)", async () => {
  const dest = await mkdtemp(join(sandbox, "root-stamp-"));
  try {
    const started = Date.now() - 1000;
    await run(dest, { ...context, rootStampedNow: true }, { src: "/", dest: "/app" });
    assert.ok((await stat(join(dest, "app"))).mtimeMs >= started);
    // a stage's root keeps its own times, and so do the context's subdirectories
    await run(dest, stageSource, { src: "/", dest: "/fromstage" });
    const secs = async (p: string) => Math.floor((await stat(p)).mtimeMs / 1000);
    assert.equal(await secs(join(dest, "fromstage")), await secs(stage));
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});
