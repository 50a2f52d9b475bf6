import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import {
  mkdtemp,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
  lstat,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { once } from "node:events";
import { pipeline } from "node:stream/promises";
import { getAttribute } from "@napi-rs/xattr";
import { Snapshotter, readMountInfo, mountsUnder } from "../../src/snapshot/index.js";
import { isKilnError } from "../../src/errors.js";

let base = "";

before(async () => {
  base = await mkdtemp(join(tmpdir(), "kiln-snap-"));
});
after(async () => {
  const left = mountsUnder(await readMountInfo(), base);
  for (const m of left) execFileSync("umount", ["-l", m]);
  await rm(base, { recursive: true, force: true });
  assert.deepEqual(left, [], "a test left mounts behind");
});

async function freshRoot(name: string): Promise<string> {
  const root = join(base, name);
  await mkdir(root);
  return root;
}

/** Commit a layer that adds the given files (and optional overlay whiteouts). */
async function layer(
  s: Snapshotter,
  id: string,
  parents: string[],
  files: Record<string, string>,
  whiteouts: string[] = [],
): Promise<void> {
  const l = await s.newEmpty(`new-${id}`, parents);
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(l.dir, p, ".."), { recursive: true });
    await writeFile(join(l.dir, p), content);
  }
  for (const w of whiteouts) execFileSync("mknod", [join(l.dir, w), "c", "0", "0"]);
  await s.commit(`new-${id}`, l, id);
}

/** Entry names of a layer tar as GNU tar lists them. */
async function gnuTarList(tar: AsyncIterable<Uint8Array>): Promise<string[]> {
  const child = spawn("tar", ["-tf", "-"], { stdio: ["pipe", "pipe", "inherit"] });
  const out: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => out.push(c));
  const closed = once(child, "close");
  await pipeline(tar, child.stdin);
  const [code] = (await closed) as [number];
  assert.equal(code, 0, "tar -t failed");
  return Buffer.concat(out).toString().split("\n").filter(Boolean);
}

test("overlay: prepare/commit chain, whiteouts, opaque dirs, renamed dirs", async () => {
  const s = new Snapshotter(await freshRoot("chain"));
  assert.equal(await s.driver(), "overlay");
  await layer(s, "a", [], { "etc/keep": "k", "etc/gone": "g", "d/old": "o", "r/x": "x" });
  assert.ok(await s.exists("a"));
  assert.deepEqual((await s.info("a"))?.parents, []);

  const m = await s.prepare("run1", ["a"]);
  assert.equal(await readFile(join(m.rootfs, "etc/keep"), "utf8"), "k");
  await rm(join(m.rootfs, "etc/gone"));
  await rm(join(m.rootfs, "d"), { recursive: true });
  await mkdir(join(m.rootfs, "d"));
  await writeFile(join(m.rootfs, "d/new"), "n");
  // overlayfs refuses rename(2) of a lower dir without redirect_dir (EXDEV); mv copies instead
  await assert.rejects(rename(join(m.rootfs, "r"), join(m.rootfs, "r2")), { code: "EXDEV" });
  execFileSync("mv", [join(m.rootfs, "r"), join(m.rootfs, "r2")]);

  const wh = await lstat(join(m.upperdir, "etc/gone"));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, "deleted file is a 0/0 whiteout");
  assert.equal(
    (await getAttribute(join(m.upperdir, "d"), "trusted.overlay.opaque"))?.toString(),
    "y",
  );
  assert.deepEqual(await readdir(join(m.upperdir, "d")), ["new"]);
  // redirect_dir=off: the renamed dir is copied up whole, not recorded as a redirect
  assert.equal(await readFile(join(m.upperdir, "r2/x"), "utf8"), "x");
  assert.equal(await getAttribute(join(m.upperdir, "r2"), "trusted.overlay.redirect"), null);
  assert.deepEqual((await readdir(m.upperdir)).sort(), ["d", "etc", "r", "r2"]);

  await s.commit("run1", m, "b");
  await m.release(); // idempotent after commit
  assert.deepEqual((await s.info("b"))?.parents, ["a"]);
  assert.deepEqual(mountsUnder(await readMountInfo(), s.root), []);

  const m2 = await s.prepare("run2", ["a", "b"]);
  assert.deepEqual((await readdir(m2.rootfs)).sort(), ["d", "etc", "r2"]);
  assert.deepEqual(await readdir(join(m2.rootfs, "etc")), ["keep"]);
  assert.deepEqual(await readdir(join(m2.rootfs, "d")), ["new"]);
  await assert.rejects(s.remove("a"), (e) => isKilnError(e) && e.code === "E_SNAPSHOT_IN_USE");
  await m2.release();
  assert.deepEqual(mountsUnder(await readMountInfo(), s.root), []);

  await assert.rejects(
    layer(s, "a", [], {}),
    (e) => isKilnError(e) && e.code === "E_SNAPSHOT_EXISTS",
  );
  await s.remove("b");
  assert.equal(await s.exists("b"), false);
  await assert.rejects(
    s.prepare("run3", ["b"]),
    (e) => isKilnError(e) && e.code === "E_SNAPSHOT_NOT_FOUND",
  );
  // released workspaces are removed in the background
  await s.removed();
  assert.deepEqual(await readdir(join(s.root, "active")), [], "no workspaces left");
});

/** n one-file layers; overlay layers are diffs, so they can be made in parallel without parents. */
async function chainOf(s: Snapshotter, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `sha256:${String(i).padStart(64, "0")}`);
  for (let start = 0; start < n; start += 16) {
    await Promise.all(
      ids.slice(start, start + 16).map((id, j) => {
        const i = start + j;
        // layer 5 is deleted again by layer 20: the whiteout must survive flattening
        return layer(s, id, [], { [`f/${i}`]: String(i) }, i === 20 ? ["f/5"] : []);
      }),
    );
  }
  return ids;
}

test("overlay: a 150-layer chain mounts with relative lowerdirs", async () => {
  const s = new Snapshotter(await freshRoot("long"));
  const ids = await chainOf(s, 150);
  const m = await s.prepare("r150", ids);
  const names = await readdir(join(m.rootfs, "f"));
  assert.equal(names.length, 149);
  assert.ok(!names.includes("5"));
  await m.release();
  assert.equal((await readdir(join(s.root, "snapshots"))).length, 151, "nothing was flattened");
  assert.deepEqual(mountsUnder(await readMountInfo(), s.root), []);
});

test("overlay: a layer is unpacked before its parent is committed, and committed only after it", async () => {
  const s = new Snapshotter(await freshRoot("apart"));
  assert.equal(await s.layersApart(), true);
  const child = await s.newEmpty("unpack-child", ["parent"]);
  await writeFile(join(child.dir, "c"), "child");
  await assert.rejects(s.commit("unpack-child", child, "child"), {
    code: "E_SNAPSHOT_NOT_FOUND",
  });
  assert.equal(await s.exists("child"), false);
  await layer(s, "parent", [], { p: "parent" });
  const again = await s.newEmpty("unpack-child", ["parent"]);
  await writeFile(join(again.dir, "c"), "child");
  await s.commit("unpack-child", again, "child");
  const m = await s.prepare("view", ["parent", "child"]);
  assert.deepEqual((await readdir(m.rootfs)).sort(), ["c", "p"]);
  await m.release();
});

test("overlay: chains too long for one mount are flattened", async () => {
  // 600 bytes of options hold ~30 lowerdirs, so 60 layers need two levels of flattening.
  const s = new Snapshotter(await freshRoot("flat"), { optionsLimit: 600 });
  const ids = await chainOf(s, 60);
  const m = await s.prepare("r60", ids);
  const names = await readdir(join(m.rootfs, "f"));
  assert.equal(names.length, 59);
  assert.ok(!names.includes("5"));
  assert.equal(await readFile(join(m.rootfs, "f/59"), "utf8"), "59");
  await writeFile(join(m.rootfs, "top"), "t");
  assert.deepEqual(await readdir(m.upperdir), ["top"]);
  await m.release();
  assert.ok((await readdir(join(s.root, "snapshots"))).length > 61, "a flat snapshot was made");
  assert.deepEqual(mountsUnder(await readMountInfo(), s.root), []);
  // the flattened base is reused
  const again = await s.prepare("r60b", ids);
  assert.equal((await readdir(join(again.rootfs, "f"))).length, 59);
  await again.release();
});

test("copy driver: full trees, layers that hold only changes, merged chains", async () => {
  const s = new Snapshotter(await freshRoot("copy"), { driver: "copy" });
  assert.equal(await s.driver(), "copy");
  await layer(s, "a", [], { "x/1": "1", "x/2": "2" });
  const m = await s.prepare("run", ["a"]);
  assert.equal(m.base, s.path("a"));
  assert.equal(m.rootfs, m.upperdir);
  await rm(join(m.rootfs, "x/1"));
  await s.commit("run", m, "b");
  assert.deepEqual(await readdir(join(s.path("b"), "x")), ["2"]);
  assert.deepEqual(await readdir(join(s.path("a"), "x")), ["1", "2"], "parent untouched");
  const l = await s.newEmpty("unpack", ["a", "b"]);
  assert.equal(l.whiteouts, "apply");
  assert.deepEqual(await readdir(join(l.dir, "x")), ["2"]);
  await l.release();
  // the layers (as GNU tar reads them): a's whole tree; b only its deletion, x/2 left out
  assert.deepEqual(await gnuTarList(await s.diff("a")), ["x/", "x/1", "x/2"]);
  assert.deepEqual(await gnuTarList(await s.diff("b")), ["x/", "x/.wh.1"]);
  // a merge (COPY --link): c was made on nothing, so [a, b, c] is b's tree plus c's files
  await layer(s, "c", [], { "y/3": "3" });
  const merged = await s.prepare("merged", ["a", "b", "c"]);
  assert.deepEqual(await readdir(join(merged.rootfs, "x")), ["2"]);
  assert.deepEqual(await readdir(join(merged.rootfs, "y")), ["3"]);
  await writeFile(join(merged.rootfs, "x/2"), "two");
  await rm(join(merged.rootfs, "y/3"));
  await s.commit("merged", merged, "d");
  assert.deepEqual(await gnuTarList(await s.diff("d")), ["x/", "x/2", "y/", "y/.wh.3"]);
  assert.deepEqual(await readdir(join(s.path("c"), "y")), ["3"], "merged layer untouched");
  await assert.rejects(
    new Snapshotter(s.root, { driver: "overlay" }).driver(),
    (e) => isKilnError(e) && e.code === "E_SNAPSHOT_DRIVER",
  );
});

test("cleanupStale unmounts and removes what a SIGKILLed process left", async () => {
  const root = await freshRoot("stale");
  const s = new Snapshotter(root);
  await layer(s, "a", [], { f: "1" });
  const entry = fileURLToPath(new URL("../../src/snapshot/index.ts", import.meta.url));
  const script = `
    import { Snapshotter } from ${JSON.stringify(entry)};
    const s = new Snapshotter(${JSON.stringify(root)});
    const m = await s.prepare("crash", ["a"]);
    process.stdout.write(m.rootfs + "\\n");
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const rootfs = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("\n")) resolve(out.trim());
    });
    child.once("exit", () => {
      reject(new Error("child exited early"));
    });
  });
  // A live owner's mount is not touched.
  assert.deepEqual((await s.cleanupStale()).unmounted, []);
  assert.ok((await stat(join(rootfs, "f"))).isFile());
  child.kill("SIGKILL");
  await new Promise((r) => child.once("close", r));
  assert.deepEqual(mountsUnder(await readMountInfo(), root), [rootfs]);

  const res = await new Snapshotter(root).cleanupStale();
  assert.deepEqual(res.unmounted, [rootfs]);
  assert.equal(res.removed.length, 1);
  assert.deepEqual(mountsUnder(await readMountInfo(), root), []);
  assert.deepEqual(await readdir(join(root, "active")), []);
  assert.ok(await s.exists("a"));
});

test("a snapshot is flushed in the background; one a crash cut off before its flush counts as absent and is replaced", async () => {
  const root = await freshRoot("durable");
  const s = new Snapshotter(root);
  await layer(s, "kept", [], { f: "kept" });
  await layer(s, "cut", [], { f: "old" });
  await layer(s, "inflight", [], { f: "live" });
  await s.durable();
  const dirOf = (id: string) => join(s.path(id), "..");
  for (const id of ["kept", "cut", "inflight"])
    assert.ok((await stat(join(dirOf(id), "synced"))).isFile(), `${id} is marked synced`);
  // "cut": published by a process that died before the flush (same pid, another start time)
  await rm(join(dirOf("cut"), "synced"));
  const meta = JSON.parse(await readFile(join(dirOf("cut"), "meta.json"), "utf8")) as {
    owner: string;
  };
  await writeFile(
    join(dirOf("cut"), "meta.json"),
    JSON.stringify({ ...meta, owner: `${process.pid}-1` }),
  );
  // "inflight": not flushed yet, but its publisher (this process) is alive
  await rm(join(dirOf("inflight"), "synced"));

  const later = new Snapshotter(root);
  assert.equal(await later.exists("kept"), true);
  assert.equal(await later.exists("inflight"), true, "a live publisher's snapshot counts");
  assert.equal(await later.exists("cut"), false, "cut off by a crash: absent");
  await layer(later, "cut", [], { f: "new" });
  assert.equal(await readFile(join(later.path("cut"), "f"), "utf8"), "new");
  await later.durable();
  assert.ok((await stat(join(dirOf("cut"), "synced"))).isFile());
  assert.equal(await new Snapshotter(root).exists("cut"), true);
});
