import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { resolveInRoot, resolveProgram } from "../../../src/emulation/index.js";

async function rootfs(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-rootfs-test-"));
  await mkdir(path.join(root, "usr/bin"), { recursive: true });
  await writeFile(path.join(root, "usr/bin/busybox"), "x", { mode: 0o755 });
  await writeFile(path.join(root, "usr/bin/data"), "x", { mode: 0o644 });
  await symlink("usr/bin", path.join(root, "bin")); // merged /usr
  await symlink("/usr/bin/busybox", path.join(root, "usr/bin/sh"));
  await symlink("../../../../../etc/passwd", path.join(root, "usr/bin/escape"));
  await symlink("loop2", path.join(root, "loop1"));
  await symlink("loop1", path.join(root, "loop2"));
  return root;
}

test("resolveInRoot follows symlinks without leaving the rootfs", async () => {
  const root = await rootfs();
  try {
    assert.equal(await resolveInRoot(root, "/bin/sh"), path.join(root, "usr/bin/busybox"));
    assert.equal(await resolveInRoot(root, "bin/../bin/./sh"), path.join(root, "usr/bin/busybox"));
    assert.equal(await resolveInRoot(root, "/usr/bin/escape"), undefined); // /etc/passwd of the rootfs
    await mkdir(path.join(root, "etc"));
    await writeFile(path.join(root, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    assert.equal(await resolveInRoot(root, "/usr/bin/escape"), path.join(root, "etc/passwd"));
    assert.equal(await resolveInRoot(root, "/loop1"), undefined);
    assert.equal(await resolveInRoot(root, "/nope/sh"), undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("resolveProgram searches PATH for executables like execvp", async () => {
  const root = await rootfs();
  try {
    assert.deepEqual(await resolveProgram(root, "sh"), {
      containerPath: "/usr/bin/sh",
      hostPath: path.join(root, "usr/bin/busybox"),
    });
    assert.equal((await resolveProgram(root, "sh", "/bin"))?.containerPath, "/bin/sh");
    assert.equal(await resolveProgram(root, "data"), undefined); // not executable
    assert.equal(
      (await resolveProgram(root, "/bin/busybox"))?.hostPath,
      path.join(root, "usr/bin/busybox"),
    );
    assert.equal(await resolveProgram(root, "missing"), undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
