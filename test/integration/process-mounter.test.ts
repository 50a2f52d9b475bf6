// src/process/mounter.ts and the overlay mounts made through it (src/snapshot/overlay.ts): real
// mount(2)/umount2(2) calls from the Perl helper, checked against /proc/self/mountinfo.
import { test } from "node:test";
import assert from "node:assert/strict";
import { open, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { mountSyscall, unmountSyscall } from "../../src/process/index.js";
import { mountOverlay, unmount } from "../../src/snapshot/overlay.js";
import { readMountInfo } from "../../src/snapshot/mountinfo.js";
import { isKilnError } from "../../src/errors.js";

const mounted = async (target: string): Promise<boolean> =>
  (await readMountInfo()).some((m) => m.mountPoint === target);

async function workspace(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `kiln-mounter-${name}-`));
  for (const d of ["lower", "upper", "work", "merged"]) await mkdir(join(dir, d));
  await writeFile(join(dir, "lower", "from-lower"), "lower\n");
  return dir;
}

test("an overlay with relative dirs mounts, writes land in its upperdir, and it unmounts", async () => {
  // a tab and a newline in the path: the helper's protocol must carry any byte of a path
  const dir = await workspace("ok\tx\ny");
  const merged = join(dir, "merged");
  try {
    await mountOverlay({ lowers: ["lower"], upper: "upper", work: "work" }, merged, dir);
    assert.ok(await mounted(merged), "mounted");
    assert.equal(await readFile(join(merged, "from-lower"), "utf8"), "lower\n");
    await writeFile(join(merged, "new"), "upper\n");
    assert.equal(await readFile(join(dir, "upper", "new"), "utf8"), "upper\n");
    await unmount(merged);
    assert.ok(!(await mounted(merged)), "unmounted");
    // unmounting what is not mounted (any more) is not an error
    await unmount(merged);
    assert.equal((await unmountSyscall(merged))?.errno, constants.errno.EINVAL);
  } finally {
    await unmount(merged);
    await rm(dir, { recursive: true, force: true });
  }
});

test("a failed mount names the target and the kernel's reason; the helper keeps serving", async () => {
  const dir = await workspace("fail");
  const merged = join(dir, "merged");
  try {
    await assert.rejects(
      mountOverlay({ lowers: ["missing"], upper: "upper", work: "work" }, merged, dir),
      (e: unknown) => {
        assert.ok(isKilnError(e) && e.code === "E_SNAPSHOT_MOUNT", String(e));
        assert.ok(e.message.includes(merged), e.message);
        assert.match(e.message, /No such file or directory/);
        return true;
      },
    );
    const failed = await mountSyscall({
      source: "none",
      target: merged,
      fstype: "no-such-fs",
      data: "",
      cwd: dir,
    });
    assert.equal(failed?.errno, constants.errno.ENODEV);
    await mountOverlay({ lowers: ["lower"], upper: "upper", work: "work" }, merged, dir);
    assert.ok(await mounted(merged));
  } finally {
    await unmount(merged);
    await rm(dir, { recursive: true, force: true });
  }
});

test("a busy overlay is detached lazily, and gone once its last user closes", async () => {
  const dir = await workspace("busy");
  const merged = join(dir, "merged");
  try {
    await mountOverlay({ lowers: ["lower"], upper: "upper", work: "work" }, merged, dir);
    // an open file makes umount2 fail with EBUSY: unmount detaches it instead
    const fh = await open(join(merged, "from-lower"), "r");
    try {
      assert.equal((await unmountSyscall(merged))?.errno, constants.errno.EBUSY);
      await unmount(merged);
      assert.ok(!(await mounted(merged)), "detached from the tree");
      assert.equal(await fh.readFile("utf8"), "lower\n", "an open file still reads");
    } finally {
      await fh.close();
    }
  } finally {
    await unmount(merged);
    await rm(dir, { recursive: true, force: true });
  }
});
