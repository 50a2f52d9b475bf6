import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mkdtemp,
  mkdir,
  symlink,
  writeFile,
  readFile,
  lstat,
  readlink,
  rm,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  compileGlob,
  copyInto,
  parseChmod,
  resolveInRoot,
  type CopyRequest,
} from "../../../src/fileops/index.js";
import { KilnError } from "../../../src/errors.js";

test("globs follow filepath.Match per segment, ** spans segments", () => {
  const cases: [string, string, boolean][] = [
    ["*.go", "main.go", true],
    ["*.go", "sub/main.go", false],
    ["**/*.go", "sub/deep/main.go", true],
    ["**/*.go", "main.go", true],
    ["src/**", "src/a/b", true],
    ["a?c", "abc", true],
    ["a?c", "ac", false],
    ["[a-c]x", "bx", true],
    ["[^a-c]x", "bx", false],
    ["[^a-c]x", "dx", true],
    ["\\*", "*", true],
    ["\\*", "a", false],
    ["dir/*/f", "dir/x/f", true],
  ];
  for (const [pattern, path, want] of cases) {
    assert.equal(compileGlob(pattern)(path), want, `${pattern} ~ ${path}`);
  }
});

test("chmod accepts octal and symbolic modes", () => {
  assert.equal(parseChmod("755")(0o600, false), 0o755);
  assert.equal(parseChmod("0644")(0o777, true), 0o644);
  assert.equal(parseChmod("u+x")(0o644, false), 0o744);
  assert.equal(parseChmod("go-w")(0o777, false), 0o755);
  assert.equal(parseChmod("a=rX")(0o640, false), 0o444);
  assert.equal(parseChmod("a=rX")(0o640, true), 0o555);
  assert.equal(parseChmod("u=rwx,g=rx,o=")(0, false), 0o750);
  assert.throws(() => parseChmod("rwx"), KilnError);
});

test("resolution stays inside the root through absolute and relative symlinks", async () => {
  const root = await mkdtemp(join(tmpdir(), "kiln-resolve-"));
  try {
    await mkdir(join(root, "real"));
    await symlink("/real", join(root, "abs"));
    await symlink("../../../../real", join(root, "rel"));
    await symlink("/etc", join(root, "etc-link"));
    assert.equal(await resolveInRoot(root, "/abs/x", { followFinal: true }), join(root, "real/x"));
    assert.equal(await resolveInRoot(root, "/rel/x", { followFinal: true }), join(root, "real/x"));
    assert.equal(
      await resolveInRoot(root, "../../etc-link/passwd", { followFinal: true }),
      join(root, "etc/passwd"),
    );
    assert.equal(await resolveInRoot(root, "/abs", { followFinal: false }), join(root, "abs"));
    await symlink("loop", join(root, "loop"));
    await assert.rejects(resolveInRoot(root, "/loop", { followFinal: true }), KilnError);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

const base: CopyRequest = {
  src: "",
  dest: "",
  dirContents: true,
  allowWildcard: true,
  allowEmptyWildcard: false,
  excludes: [],
  parents: false,
};

test("a context symlink pointing outside is copied as a link, never followed out", async () => {
  const ctx = await mkdtemp(join(tmpdir(), "kiln-ctx-"));
  const dest = await mkdtemp(join(tmpdir(), "kiln-dest-"));
  try {
    await writeFile(join(ctx, "a.txt"), "A");
    await mkdir(join(ctx, "dir"));
    await symlink("/etc/passwd", join(ctx, "dir", "evil"));
    const source = { root: ctx, label: "build context", ownerOverride: { uid: 0, gid: 0 } };
    // the named source is followed, but inside the context: its /etc/passwd does not exist
    await assert.rejects(
      copyInto(dest, source, { ...base, src: "dir/evil", dest: "/out/evil-copy" }),
      (e: unknown) => e instanceof KilnError && e.code === "E_COPY_NOT_FOUND",
    );
    // inside a copied directory a symlink stays a symlink
    await copyInto(dest, source, { ...base, src: "dir", dest: "/d2" });
    assert.ok((await lstat(join(dest, "d2/evil"))).isSymbolicLink());
    assert.equal(await readlink(join(dest, "d2/evil")), "/etc/passwd");
    await copyInto(dest, source, { ...base, src: "*.txt", dest: "/d/" });
    assert.equal(await readFile(join(dest, "d/a.txt"), "utf8"), "A");
  } finally {
    await rm(ctx, { recursive: true, force: true });
    await rm(dest, { recursive: true, force: true });
  }
});
