import { test } from "node:test";
import assert from "node:assert/strict";
import {
  mountsUnder,
  overlayFits,
  overlayOptions,
  parseMountInfo,
} from "../../../src/snapshot/index.js";
import { isKilnError } from "../../../src/errors.js";

const MOUNTINFO = [
  "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
  "45 26 0:39 / /var/lib/kiln/active/1-2-ab/merged rw,relatime - overlay overlay rw,lowerdir=a/fs:b/fs,upperdir=../active/1-2-ab/upper",
  "46 45 0:40 / /var/lib/kiln/active/1-2-ab/merged/dev rw - tmpfs tmpfs rw",
  "47 26 0:41 / /var/lib/kiln2/x rw - tmpfs tmpfs rw",
  "48 26 0:42 / /mnt/with\\040space rw - tmpfs tmpfs rw",
  "garbage",
].join("\n");

test("parseMountInfo reads fields and unescapes octal", () => {
  const m = parseMountInfo(MOUNTINFO);
  assert.equal(m.length, 5);
  assert.deepEqual(m[1], {
    mountId: 45,
    parentId: 26,
    mountPoint: "/var/lib/kiln/active/1-2-ab/merged",
    fsType: "overlay",
    source: "overlay",
    superOptions: "rw,lowerdir=a/fs:b/fs,upperdir=../active/1-2-ab/upper",
  });
  assert.equal(m[4]!.mountPoint, "/mnt/with space");
});

test("mountsUnder: deepest first, prefix-safe", () => {
  assert.deepEqual(mountsUnder(parseMountInfo(MOUNTINFO), "/var/lib/kiln"), [
    "/var/lib/kiln/active/1-2-ab/merged/dev",
    "/var/lib/kiln/active/1-2-ab/merged",
  ]);
});

test("overlayOptions: top-first lowers, diff-safe options, read-only form", () => {
  assert.equal(
    overlayOptions({ lowers: ["b/fs", "a/fs"], upper: "../u", work: "../w" }),
    "lowerdir=b/fs:a/fs,upperdir=../u,workdir=../w,index=off,redirect_dir=off,metacopy=off",
  );
  assert.equal(
    overlayOptions({ lowers: ["b", "a"] }),
    "lowerdir=b:a,index=off,redirect_dir=off,metacopy=off",
  );
  assert.throws(
    () => overlayOptions({ lowers: ["a:b"] }),
    (e) => isKilnError(e) && e.code === "E_SNAPSHOT_PATH",
  );
});

test("overlayFits: one page of options and at most 500 layers", () => {
  const lowers = (n: number) => Array.from({ length: n }, () => "0123456789ab/fs");
  assert.ok(overlayFits({ lowers: lowers(200) }));
  assert.ok(!overlayFits({ lowers: lowers(300) }));
  assert.ok(!overlayFits({ lowers: Array.from({ length: 501 }, () => "a") }));
  assert.ok(!overlayFits({ lowers: lowers(10) }, 100));
});

test("overlayOptions: volatile only for a writable mount, and counted when checking the fit", () => {
  const rw = { lowers: ["a/fs"], upper: "u", work: "w" };
  assert.equal(
    overlayOptions(rw, { volatile: true }),
    "lowerdir=a/fs,upperdir=u,workdir=w,index=off,redirect_dir=off,metacopy=off,volatile",
  );
  assert.doesNotMatch(overlayOptions(rw), /volatile/);
  assert.doesNotMatch(overlayOptions({ lowers: ["a", "b"] }, { volatile: true }), /volatile/);
  const limit = overlayOptions(rw).length;
  assert.equal(overlayFits(rw, limit), false, "the longer, volatile options must fit");
  assert.equal(overlayFits(rw, limit + ",volatile".length), true);
});
