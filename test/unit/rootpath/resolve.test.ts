import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanInRoot, resolveInRoot } from "../../../src/rootpath/index.js";
import { isKilnError } from "../../../src/errors.js";

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "kiln-rootpath-"));
  try {
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const follow = { followFinal: true };

test("cleanInRoot: absolute, no `.`, `..` or empty components, `..` stops at /", () => {
  assert.equal(cleanInRoot(""), "/");
  assert.equal(cleanInRoot("a//b/./c"), "/a/b/c");
  assert.equal(cleanInRoot("a/b/"), "/a/b/", "a trailing slash is kept");
  assert.equal(cleanInRoot("../../x/../y"), "/y");
});

test("resolution stays inside the root through absolute and relative symlinks", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "real"));
    await symlink("/real", join(root, "abs"));
    await symlink("../../../../real", join(root, "rel"));
    await symlink("/etc", join(root, "etc-link"));
    assert.equal(await resolveInRoot(root, "/abs/x", follow), join(root, "real/x"));
    assert.equal(await resolveInRoot(root, "/rel/x", follow), join(root, "real/x"));
    assert.equal(await resolveInRoot(root, "/../../abs/x", follow), join(root, "real/x"));
    assert.equal(
      await resolveInRoot(root, "../../etc-link/passwd", follow),
      join(root, "etc/passwd"),
      "missing components are kept: the result is where they would be created",
    );
    assert.equal(await resolveInRoot(root, "/", follow), root);
  }));

test("the final component is followed only with followFinal", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "real"));
    await symlink("/real", join(root, "abs"));
    assert.equal(await resolveInRoot(root, "/abs", { followFinal: false }), join(root, "abs"));
    assert.equal(await resolveInRoot(root, "/abs", follow), join(root, "real"));
  }));

test("merged /usr: chains of links, and `..` inside a link target walks from where it points", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "usr/bin"), { recursive: true });
    await writeFile(join(root, "usr/bin/busybox"), "x");
    await symlink("usr/bin", join(root, "bin"));
    await symlink("/usr/bin/busybox", join(root, "usr/bin/sh"));
    await symlink("../../../../../etc/passwd", join(root, "usr/bin/escape"));
    await symlink("../bin/busybox", join(root, "bin/up"));
    assert.equal(await resolveInRoot(root, "/bin/sh", follow), join(root, "usr/bin/busybox"));
    assert.equal(
      await resolveInRoot(root, "bin/../bin/./sh", follow),
      join(root, "usr/bin/busybox"),
    );
    assert.equal(await resolveInRoot(root, "/bin/up", follow), join(root, "usr/bin/busybox"));
    assert.equal(await resolveInRoot(root, "/bin/escape", follow), join(root, "etc/passwd"));
  }));

test("symlink loops fail with E_SYMLINK_LOOP", () =>
  withRoot(async (root) => {
    await symlink("loop", join(root, "loop"));
    await symlink("/loop2", join(root, "loop1"));
    await symlink("/loop1", join(root, "loop2"));
    for (const p of ["/loop", "/loop1/x"]) {
      await assert.rejects(
        resolveInRoot(root, p, follow),
        (e: unknown) => isKilnError(e) && e.code === "E_SYMLINK_LOOP" && e.hint !== undefined,
      );
    }
  }));
