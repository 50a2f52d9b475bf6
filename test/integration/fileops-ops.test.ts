/** mkdir / mkfile / rm file actions with BuildKit's semantics, on real directories as root. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mkdirIn, mkfileIn, rmIn } from "../../src/fileops/index.js";
import { isKilnError } from "../../src/errors.js";

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "kiln-fileops-ops-"));
  try {
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function meta(path: string): Promise<string> {
  const st = await lstat(path);
  return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
}

const code = (c: string) => (e: unknown) => isKilnError(e) && e.code === c;

test("mkdir -p gives every created directory the mode and owner", () =>
  withRoot(async (root) => {
    await mkdirIn(root, "/a/b/c", { mode: 0o700, makeParents: true, owner: { uid: 5, gid: 6 } });
    assert.equal(await meta(join(root, "a")), "700 5:6");
    assert.equal(await meta(join(root, "a/b/c")), "700 5:6");
    // existing directories are left alone
    await mkdirIn(root, "/a", { mode: 0o755, makeParents: true });
    assert.equal(await meta(join(root, "a")), "700 5:6");
    await writeFile(join(root, "file"), "");
    await assert.rejects(
      mkdirIn(root, "/file/x", { mode: 0o755, makeParents: true }),
      code("E_MKDIR"),
    );
  }));

test("mkdir without parents needs the parent and ignores an existing entry", () =>
  withRoot(async (root) => {
    await assert.rejects(
      mkdirIn(root, "/no/such", { mode: 0o755, makeParents: false }),
      code("E_MKDIR"),
    );
    await writeFile(join(root, "f"), "");
    await mkdirIn(root, "/f", { mode: 0o755, makeParents: false });
    assert.ok((await lstat(join(root, "f"))).isFile());
  }));

test("mkdir follows symlinks inside the root only", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "real"));
    await symlink("/real", join(root, "ln"));
    await mkdirIn(root, "/ln/sub", { mode: 0o755, makeParents: true });
    assert.ok((await lstat(join(root, "real/sub"))).isDirectory());
  }));

test("mkfile writes through a final symlink inside the root and keeps an existing file's mode", () =>
  withRoot(async (root) => {
    await mkfileIn(root, "/new", "data", { mode: 0o600 });
    assert.equal((await lstat(join(root, "new"))).mode & 0o777, 0o600);
    await mkfileIn(root, "/new", "again", { mode: 0o644 });
    assert.equal((await lstat(join(root, "new"))).mode & 0o777, 0o600);
    assert.equal(await readFile(join(root, "new"), "utf8"), "again");
    await symlink("/etc/target", join(root, "ln"));
    await mkdir(join(root, "etc"));
    await mkfileIn(root, "/ln", "via link", { mode: 0o644 });
    assert.equal(await readFile(join(root, "etc/target"), "utf8"), "via link");
    assert.equal(await readlink(join(root, "ln")), "/etc/target");
    await assert.rejects(mkfileIn(root, "/missing/parent", "", { mode: 0o644 }), code("E_MKFILE"));
  }));

test("rm removes the link, not its target; missing paths per allowNotFound; wildcards", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "keep"));
    await writeFile(join(root, "keep/x"), "");
    await symlink("/keep", join(root, "ln"));
    await rmIn(root, "/ln", false);
    assert.ok((await lstat(join(root, "keep/x"))).isFile());
    await assert.rejects(lstat(join(root, "ln")));
    await assert.rejects(rmIn(root, "/gone", false), code("E_RM"));
    await rmIn(root, "/gone", true);
    await assert.rejects(rmIn(root, "/", true), code("E_RM"));
    for (const n of ["a.tmp", "b.tmp", "c.txt"]) await writeFile(join(root, n), "");
    await rmIn(root, "/*.tmp", false, true);
    await assert.rejects(lstat(join(root, "a.tmp")));
    assert.ok((await lstat(join(root, "c.txt"))).isFile());
  }));
