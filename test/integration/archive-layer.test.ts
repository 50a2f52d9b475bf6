// Layer diff and apply against the real thing: a real overlayfs mount produces the upperdir
// (whiteouts, opaque dirs), its merged view is the expected result, and an independent tool
// (umoci) applies our layers on top of a base. Our own apply is checked against the same view.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdir, mkdtemp, open, rm, writeFile, readFile, rename, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { setAttributeSync } from "@napi-rs/xattr";
import {
  applyLayer,
  applyLayerBlob,
  compressLayer,
  compressLayerTo,
  diffDigest,
  diffOf,
  diffTrees,
  diffUpperDir,
  dirToTar,
  readTar,
  OFF_THREAD_BYTES,
  OFF_THREAD_WORKERS,
  unpackLayerBlob,
  type CompressedLayer,
  type Compression,
} from "../../src/archive/index.js";
import { BINARY_CAP, describeTree, sh, type NodeInfo } from "../unit/archive/fixtures.js";

let work: string;
let base: string;
let upper: string;
let merged: string;
let expected: Record<string, NodeInfo>;
const mounts: string[] = [];
const LONG = `${"long-directory-name-".repeat(6)}/${"long-file-name-".repeat(10)}`;

function mountOverlay(lower: string, target: string, upperDir?: string, workDir?: string): void {
  const opts = upperDir
    ? `lowerdir=${lower},upperdir=${upperDir},workdir=${workDir}`
    : `lowerdir=${lower}`;
  sh("mount", ["-t", "overlay", "overlay", "-o", opts, target]);
  mounts.push(target);
}

function umount(target: string): void {
  sh("umount", [target]);
  mounts.splice(mounts.indexOf(target), 1);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "kiln-archive-layer-"));
  base = join(work, "base");
  upper = join(work, "upper");
  merged = join(work, "merged");
  for (const d of [base, upper, merged, join(work, "ovl-work")]) await mkdir(d);
  // The base image.
  await mkdir(join(base, "deldir/y"), { recursive: true });
  await mkdir(join(base, "opq/sub"), { recursive: true });
  await mkdir(join(base, "bin"));
  for (const f of [
    "keep.txt",
    "modify.txt",
    "delete-me.txt",
    "deldir/x",
    "deldir/y/z",
    "opq/old1",
    "opq/sub/olda",
  ]) {
    await writeFile(join(base, f), `base ${f}\n`);
  }
  await writeFile(join(base, "bin/tool"), "#!/bin/sh\n", { mode: 0o755 });
  await mkdir(join(base, "quiet"));
  await writeFile(join(base, "quiet/same.txt"), "same\n");

  // A build step, performed through a real overlay mount.
  mountOverlay(base, merged, upper, join(work, "ovl-work"));
  const m = (p: string): string => join(merged, p);
  await writeFile(m("modify.txt"), "modified\n");
  sh("chown", ["1000:1000", m("modify.txt")]);
  sh("chmod", ["640", m("modify.txt")]);
  await rm(m("delete-me.txt"));
  await rm(m("deldir"), { recursive: true });
  await rm(m("opq"), { recursive: true });
  await mkdir(m("opq"));
  await writeFile(m("opq/new1"), "new in opaque dir\n");
  await mkdir(m("new/setgid"), { recursive: true });
  await mkdir(m("new/sticky"));
  sh("chmod", ["2775", m("new/setgid")]);
  sh("chmod", ["1777", m("new/sticky")]);
  await writeFile(m("new/a"), "hardlinked\n");
  sh("ln", [m("new/a"), m("new/b")]);
  setAttributeSync(m("new/a"), "user.comment", Buffer.from([0xc3, 0x28, 0x00, 0x80]));
  sh("ln", ["-s", "../keep.txt", m("new/sym")]);
  sh("ln", ["-s", "/etc/passwd", m("new/abs")]);
  await writeFile(m("new/suid"), "setuid\n");
  sh("chmod", ["4755", m("new/suid")]);
  await writeFile(m("new/cap"), "capable\n");
  sh("setcap", [BINARY_CAP, m("new/cap")]);
  sh("mkfifo", [m("new/fifo")]);
  sh("mknod", [m("new/null"), "c", "1", "3"]);
  await mkdir(m(join("new", LONG, "..")), { recursive: true });
  await writeFile(m(join("new", LONG)), Buffer.alloc(100_000, 0x5a));
  await writeFile(m("bin/newtool"), "#!/bin/sh\necho new\n", { mode: 0o755 });
  // copied up but left as it was: a stub made and removed again, a file rewritten unchanged
  await writeFile(m("quiet/stub"), "");
  await rm(m("quiet/stub"));
  sh("cp", ["-p", join(base, "quiet/same.txt"), m("quiet/same.txt")]);
  // a layer carries no user.* xattrs (containerd's diff writer keeps only capabilities)
  expected = describeTree(merged, { mtimes: true, skipXattrs: /^user\./ });
  assert.ok(describeTree(merged)["new/a"]!.xattrs?.["user.comment"], "the step set a user xattr");
  umount(merged);
});

after(async () => {
  for (const t of [...mounts].reverse()) umount(t);
  await rm(work, { recursive: true, force: true });
});

async function tarEntries(
  tar: AsyncIterable<Uint8Array>,
): Promise<{ name: string; type: string }[]> {
  const out: { name: string; type: string }[] = [];
  for await (const { entry } of readTar(tar)) out.push({ name: entry.name, type: entry.type });
  return out;
}

async function blobFile(
  dir: string,
  tar: AsyncIterable<Uint8Array>,
  compression: Compression,
): Promise<CompressedLayer> {
  const tmp = join(dir, "blobs/sha256/tmp");
  const layer = await compressLayer(tar, tmp, { compression });
  await rename(tmp, join(dir, "blobs/sha256", layer.digest.slice(7)));
  return layer;
}

async function writeBlob(dir: string, json: unknown): Promise<{ digest: string; size: number }> {
  const data = Buffer.from(JSON.stringify(json));
  const hex = createHash("sha256").update(data).digest("hex");
  await writeFile(join(dir, "blobs/sha256", hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

test("the upperdir really has overlay whiteouts and an opaque dir", () => {
  const up = describeTree(upper);
  assert.equal(up["delete-me.txt"]!.type, "char");
  assert.equal(up["delete-me.txt"]!.rdev, "0");
  assert.equal(up["deldir"]!.type, "char");
  assert.equal(up["opq"]!.xattrs?.["trusted.overlay.opaque"], Buffer.from("y").toString("hex"));
});

test("diffUpperDir emits OCI whiteouts, opaque markers and hardlinks in sorted order", async () => {
  const entries = await tarEntries(diffUpperDir(upper));
  const names = entries.map((e) => e.name);
  assert.ok(names.includes(".wh.delete-me.txt"));
  assert.ok(names.includes(".wh.deldir"));
  assert.equal(names[names.indexOf("opq/") + 1], "opq/.wh..wh..opq");
  assert.ok(!names.includes("keep.txt"), "unchanged files are not in the diff");
  assert.deepEqual(
    entries.find((e) => e.name === "new/b"),
    { name: "new/b", type: "hardlink" },
  );
  for await (const { entry } of readTar(diffUpperDir(upper))) {
    for (const k of Object.keys(entry.xattrs)) assert.ok(!k.startsWith("trusted.overlay."), k);
  }
  const clamped = [];
  for await (const { entry } of readTar(diffUpperDir(upper, { mtime: 1000 })))
    clamped.push(entry.mtime);
  assert.ok(clamped.every((t) => t <= 1000));
});

test("a layer keeps security.capability and drops user.* xattrs; a plain tar keeps them all", async () => {
  const xattrsOf = async (tar: AsyncIterable<Uint8Array>, name: string): Promise<string[]> => {
    for await (const { entry } of readTar(tar))
      if (entry.name === name) return Object.keys(entry.xattrs);
    throw new Error(`${name} is not in the tar`);
  };
  assert.deepEqual(await xattrsOf(diffUpperDir(upper), "new/cap"), ["security.capability"]);
  assert.deepEqual(await xattrsOf(diffUpperDir(upper), "new/a"), []);
  const dir = join(work, "plain");
  await mkdir(dir);
  await writeFile(join(dir, "f"), "x");
  setAttributeSync(join(dir, "f"), "user.comment", Buffer.from([0xc3, 0x28, 0x00, 0x80]));
  assert.deepEqual(await xattrsOf(dirToTar(dir), "f"), ["user.comment"]);
});

test("with its lowers, the diff leaves out what the step did not change (BuildKit's differ)", async () => {
  const up = describeTree(upper);
  assert.ok(up["quiet"] && up["quiet/same.txt"], "quiet/ was copied up");
  const names = (await tarEntries(diffUpperDir(upper, { lowers: [base] }))).map((e) => e.name);
  assert.ok(!names.some((n) => n.startsWith("quiet")), names.join(" "));
  // the opaque dir becomes a whiteout per name that went away, in name order, no marker
  const opq = names.filter((n) => n.startsWith("opq/"));
  assert.deepEqual(opq, ["opq/", "opq/new1", "opq/.wh.old1", "opq/.wh.sub"]);
  // an unchanged parent is written in front of the change inside it
  assert.ok(names.indexOf("bin/") >= 0 && names.indexOf("bin/") < names.indexOf("bin/newtool"));
  const flat = join(work, "flat-lowers");
  await mkdir(flat);
  await applyLayer(dirToTar(base), flat, { whiteouts: "delete" });
  await applyLayer(diffUpperDir(upper, { lowers: [base] }), flat, { whiteouts: "delete" });
  assert.deepEqual(describeTree(flat, { mtimes: true }), expected);
});

/** umoci's unpack of an image made of these layer tars (bottom first); returns its rootfs. */
async function umociRootfs(
  name: string,
  layers: [AsyncIterable<Uint8Array>, Compression][],
): Promise<string> {
  const layout = join(work, `layout-${name}`);
  await mkdir(join(layout, "blobs/sha256"), { recursive: true });
  await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  const blobs: CompressedLayer[] = [];
  for (const [tar, compression] of layers) blobs.push(await blobFile(layout, tar, compression));
  const config = await writeBlob(layout, {
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: blobs.map((l) => l.diffID) },
  });
  const manifest = await writeBlob(layout, {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: blobs.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  await writeFile(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
  const bundle = join(work, `bundle-${name}`);
  sh("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
  return join(bundle, "rootfs");
}

test("umoci unpacks base + our diff into exactly the merged overlay view", async () => {
  const rootfs = await umociRootfs("overlay", [
    [dirToTar(base), "gzip"],
    [diffUpperDir(upper), "uncompressed"], // umoci 0.4.7 has no zstd
  ]);
  assert.deepEqual(describeTree(rootfs, { mtimes: true }), expected);
});

test("diffTrees (the copy driver's diff) of base and the step's result: umoci gives the merged view, unchanged files left out", async () => {
  // the step's result as a plain tree, as the copy snapshot driver keeps it
  const view = join(work, "view-plain");
  const after = join(work, "after-plain");
  await mkdir(view);
  mountOverlay(`${upper}:${base}`, view);
  try {
    sh("cp", ["-a", `${view}/.`, `${after}/`]);
  } finally {
    umount(view);
  }
  const names = (await tarEntries(diffTrees(base, after))).map((e) => e.name);
  for (const gone of [".wh.delete-me.txt", ".wh.deldir", "opq/.wh.old1", "opq/.wh.sub"])
    assert.ok(names.includes(gone), `${gone} not in ${names.join(" ")}`);
  for (const same of ["keep.txt", "bin/tool", "deldir/x"])
    assert.ok(!names.includes(same), `${same} in ${names.join(" ")}`);
  assert.ok(names.includes("bin/") && names.includes("bin/newtool"), "parent dirs of changes");
  const rootfs = await umociRootfs("plain", [
    [dirToTar(base), "gzip"],
    [diffTrees(base, after), "uncompressed"],
  ]);
  assert.deepEqual(describeTree(rootfs, { mtimes: true }), expected);
});

test("diffTrees compares content when mtimes have no sub-second part", async () => {
  const lower = join(work, "cmp-lower");
  const upperTree = join(work, "cmp-upper");
  for (const [dir, body] of [
    [lower, "aaaa"],
    [upperTree, "bbbb"],
  ] as const) {
    await mkdir(dir);
    await writeFile(join(dir, "rewritten"), body);
    await writeFile(join(dir, "same"), "cccc");
    for (const f of ["rewritten", "same"]) await utimes(join(dir, f), 1000, 1000);
  }
  const names = (await tarEntries(diffTrees(lower, upperTree))).map((e) => e.name);
  assert.deepEqual(names, ["rewritten"]);
});

test("diffDigest (one reused buffer) hashes exactly the bytes diffOf gives", async () => {
  const tree = join(work, "digest-tree");
  await mkdir(join(tree, "d"), { recursive: true });
  // files of several reads of the 1 MiB buffer, between them small and empty ones
  await writeFile(join(tree, "a-big"), randomBytes((5 << 20) / 2 + 3));
  await writeFile(join(tree, "b-empty"), "");
  await writeFile(join(tree, "c-small"), "small\n");
  await writeFile(join(tree, "d/e-big"), randomBytes((3 << 20) / 2));
  for (const diff of [
    { kind: "trees" as const, lower: undefined, upper: tree },
    { kind: "upperdir" as const, upperdir: upper, lowers: [base] },
  ]) {
    const h = createHash("sha256");
    let size = 0;
    for await (const c of diffOf(diff, { mtime: 7 })) {
      h.update(c);
      size += c.length;
    }
    assert.deepEqual(await diffDigest(diff, { mtime: 7 }), {
      digest: `sha256:${h.digest("hex")}`,
      size,
    });
  }
});

/**
 * Calls `seen` with the path of each call of node:fs `name` made on this thread, through
 * node:fs as the extractor imports it (a worker thread has a node:fs of its own), until the
 * returned function is called.
 */
function watchFs(name: "lstatSync" | "openSync", seen: (path: string) => void): () => void {
  const fs = createRequire(import.meta.url)("node:fs") as Record<
    typeof name,
    (...args: unknown[]) => unknown
  >;
  const original = fs[name];
  fs[name] = (...args: unknown[]) => {
    seen(args[0] as string);
    return original(...args);
  };
  syncBuiltinESMExports();
  return () => {
    fs[name] = original;
    syncBuiltinESMExports();
  };
}

test("a layer unpacked into an empty directory is not looked up entry by entry; into a full one it replaces", async () => {
  const src = join(work, "many");
  for (const d of ["a", "b/c"]) {
    await mkdir(join(src, d), { recursive: true });
    for (let i = 0; i < 40; i++) await writeFile(join(src, d, `f${i}`), `${d} ${i}\n`);
  }
  const target = join(work, "many-unpacked");
  await mkdir(target);
  let inside = 0;
  const unwatch = watchFs("lstatSync", (p) => {
    if (p.startsWith(`${target}/`)) inside++;
  });
  try {
    await applyLayer(dirToTar(src), target, { whiteouts: "overlay" });
  } finally {
    unwatch();
  }
  assert.deepEqual(describeTree(target, { mtimes: true }), describeTree(src, { mtimes: true }));
  // 80 files in 3 directories: each directory is looked at once, when its metadata is set
  assert.ok(inside <= 3, `${inside} lstat calls inside the target`);
  // the same layer again over what it made: every entry is there and is replaced
  await writeFile(join(src, "a", "f0"), "changed\n");
  await applyLayer(dirToTar(src), target, { whiteouts: "delete" });
  assert.deepEqual(describeTree(target, { mtimes: true }), describeTree(src, { mtimes: true }));
});

test("applyLayer (delete mode) over the base gives the merged view", async () => {
  const flat = join(work, "flat");
  await mkdir(flat);
  await applyLayer(dirToTar(base), flat, { whiteouts: "delete" });
  await applyLayer(diffUpperDir(upper), flat, { whiteouts: "delete" });
  assert.deepEqual(describeTree(flat, { mtimes: true }), expected);
});

test("applyLayer (overlay mode) makes a lowerdir that overlayfs merges into the same view", async () => {
  const s1 = join(work, "snap1");
  const s2 = join(work, "snap2");
  const view = join(work, "view");
  for (const d of [s1, s2, view]) await mkdir(d);
  await applyLayer(dirToTar(base), s1, { whiteouts: "overlay" });
  await applyLayer(diffUpperDir(upper), s2, { whiteouts: "overlay" });
  // Diffing the applied snapshot reproduces the original layer byte for byte.
  const again = createHash("sha256");
  for await (const c of diffUpperDir(s2)) again.update(c);
  const orig = createHash("sha256");
  for await (const c of diffUpperDir(upper)) orig.update(c);
  assert.equal(again.digest("hex"), orig.digest("hex"));
  mountOverlay(`${s2}:${s1}`, view);
  try {
    assert.deepEqual(describeTree(view, { mtimes: true }), expected);
  } finally {
    umount(view);
  }
});

test("compressLayer hashes both sides in one pass, deterministically, for every compression", async () => {
  const dir = join(work, "compress");
  await mkdir(dir);
  for (const compression of ["gzip", "zstd", "uncompressed"] as const) {
    const file = join(dir, compression);
    const a = await compressLayer(diffUpperDir(upper), file, { compression });
    const b = await compressLayer(diffUpperDir(upper), `${file}.2`, { compression });
    assert.deepEqual(a, b, "same input, same blob");
    const bytes = await readFile(file);
    assert.equal(a.digest, `sha256:${createHash("sha256").update(bytes).digest("hex")}`);
    assert.equal(a.size, bytes.length);
    const plain =
      compression === "gzip"
        ? sh("sh", ["-c", `gzip -dc ${file} | sha256sum`])
        : compression === "zstd"
          ? sh("sh", ["-c", `zstd -dcq ${file} | sha256sum`])
          : sh("sha256sum", [file]);
    assert.equal(a.diffID, `sha256:${plain.slice(0, 64)}`);
    assert.equal(
      a.mediaType.endsWith(compression === "uncompressed" ? ".tar" : `+${compression}`),
      true,
    );
    for (const mediaType of [a.mediaType, undefined]) {
      const target = await mkdtemp(join(dir, "apply-"));
      const r = await applyLayerBlob(createReadStream(file), mediaType, target, {
        expectedDiffID: a.diffID,
        whiteouts: "overlay",
      });
      assert.equal(r.uncompressedSize, a.uncompressedSize);
    }
  }
});

test("a tar read through one reused buffer (transient) gives the same blob on every compression path", async () => {
  const dir = await mkdtemp(join(work, "transient-"));
  const large = join(dir, "large");
  const small = join(dir, "small");
  await mkdir(join(large, "d"), { recursive: true });
  await mkdir(small);
  // files of several 1 MiB reads, between them small ones: large enough for a program
  await writeFile(join(large, "a-big"), randomBytes((5 << 20) / 2 + 3));
  for (let i = 0; i < 40; i++) await writeFile(join(large, "d", `f${i}`), randomBytes(700 + i));
  await writeFile(join(large, "e-big"), randomBytes(3 << 20));
  for (let i = 0; i < 5; i++) await writeFile(join(small, `f${i}`), `small ${i}\n`.repeat(i + 1));
  const cases = [
    { compression: "gzip" as const },
    { compression: "gzip" as const, level: 6 },
    { compression: "zstd" as const },
    { compression: "uncompressed" as const },
  ];
  for (const tree of [large, small]) {
    const diff = { kind: "trees" as const, lower: undefined, upper: tree };
    for (const c of cases) {
      const name = `${tree === large ? "large" : "small"}-${c.compression}-${c.level ?? ""}`;
      const owned = await compressLayer(diffOf(diff), join(dir, `${name}.owned`), c);
      const reused = await compressLayer(diffOf(diff, {}, true), join(dir, `${name}.reused`), {
        ...c,
        transient: true,
      });
      assert.deepEqual(reused, owned, name);
      assert.deepEqual(
        await readFile(join(dir, `${name}.reused`)),
        await readFile(join(dir, `${name}.owned`)),
        name,
      );
    }
    // gzip by a program writing the blob file itself
    const file = join(dir, `${tree === large ? "large" : "small"}-file.gz`);
    let written: Buffer | undefined;
    const toFile = async (fill: (fd: number) => Promise<void>) => {
      const fh = await open(file, "w");
      try {
        await fill(fh.fd);
      } finally {
        await fh.close();
      }
      const bytes = await readFile(file);
      written = bytes;
      return {
        digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
        size: bytes.length,
      };
    };
    const unused = () => Promise.reject(new Error("a program writes this blob"));
    const owned = await compressLayerTo(diffOf(diff), tree === large ? unused : toBlob, {
      compression: "gzip",
      writeFile: toFile,
    });
    const first = written;
    const reused = await compressLayerTo(diffOf(diff, {}, true), tree === large ? unused : toBlob, {
      compression: "gzip",
      writeFile: toFile,
      transient: true,
    });
    assert.deepEqual(reused, owned);
    assert.deepEqual(written, first);
  }
});

/** A blob writer that keeps the blob in memory. */
async function toBlob(blob: Readable): Promise<{ digest: string; size: number }> {
  const chunks: Buffer[] = [];
  for await (const c of blob) chunks.push(c as Buffer);
  const bytes = Buffer.concat(chunks);
  return {
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    size: bytes.length,
  };
}

test("a large gzip layer goes through igzip without a level and pigz with one; both apply and a cut blob is refused", async () => {
  const dir = await mkdtemp(join(work, "big-gzip-"));
  await mkdir(join(dir, "tree"));
  // text and incompressible bytes: large enough that neither side is done in-process (the
  // blob is over 4 MiB)
  await writeFile(join(dir, "tree", "text"), "kiln layer line\n".repeat(40_000));
  await writeFile(join(dir, "tree", "random"), randomBytes(5_000_000));
  const tar = join(dir, "layer.tar");
  sh("tar", ["-cf", tar, "-C", join(dir, "tree"), "."]);
  const tarDigest = `sha256:${sh("sha256sum", [tar]).slice(0, 64)}`;
  const byDefault = await compressLayer(createReadStream(tar), join(dir, "default.gz"), {
    compression: "gzip",
  });
  const level6 = await compressLayer(createReadStream(tar), join(dir, "level6.gz"), {
    compression: "gzip",
    level: 6,
  });
  assert.equal(byDefault.diffID, tarDigest);
  assert.equal(level6.diffID, tarDigest);
  const igzip = sh("sh", ["-c", `igzip -c -n -3 < ${tar} | sha256sum`]).slice(0, 64);
  assert.equal(byDefault.digest, `sha256:${igzip}`, "the default is ISA-L's level 3");
  const pigz = sh("sh", ["-c", `pigz -c -n -6 < ${tar} | sha256sum`]).slice(0, 64);
  assert.equal(level6.digest, `sha256:${pigz}`, "a chosen level is zlib's, by pigz");
  for (const blob of ["default.gz", "level6.gz"]) {
    const target = await mkdtemp(join(dir, "apply-"));
    await applyLayerBlob(createReadStream(join(dir, blob)), undefined, target, {
      expectedDiffID: tarDigest,
      whiteouts: "delete",
    });
    assert.equal((await readFile(join(target, "text"), "utf8")).length, 16 * 40_000);
  }
  const cut = (await readFile(join(dir, "default.gz"))).subarray(0, 4_500_000);
  await assert.rejects(
    applyLayerBlob(Readable.from([cut]), byDefault.mediaType, await mkdtemp(join(dir, "cut-")), {
      expectedDiffID: tarDigest,
      whiteouts: "delete",
    }),
    (e: Error & { code?: string }) =>
      ["E_LAYER_INVALID", "E_LAYER_DIGEST"].includes(e.code ?? "") &&
      /decompressing layer|diffID mismatch/.test(e.message),
  );
});

test("a large layer is unpacked on a worker thread, a small one on kiln's; failures keep their code", async () => {
  const dir = await mkdtemp(join(work, "off-thread-"));
  const tree = join(dir, "tree");
  await mkdir(join(tree, "d"), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(tree, "d", `f${i}`), `file ${i}\n`);
  // incompressible, so that the blob is over OFF_THREAD_BYTES
  await writeFile(join(tree, "random"), randomBytes(OFF_THREAD_BYTES + (1 << 20)));
  const big = await compressLayer(dirToTar(tree), join(dir, "big.gz"), { compression: "gzip" });
  assert.ok(big.size >= OFF_THREAD_BYTES, `${big.size} bytes`);
  const small = await compressLayer(dirToTar(join(tree, "d")), join(dir, "small.gz"), {
    compression: "gzip",
  });
  // files opened on this thread, per target
  const opened = new Map<string, number>();
  const unwatch = watchFs("openSync", (p) => {
    for (const [t, n] of opened) if (p.startsWith(`${t}/`)) opened.set(t, n + 1);
  });
  const unpack = async (file: string, layer: CompressedLayer, expectedDiffID = layer.diffID) => {
    const target = await mkdtemp(join(dir, "unpacked-"));
    opened.set(target, 0);
    await unpackLayerBlob(createReadStream(file), layer.mediaType, target, {
      expectedDiffID,
      blobSize: layer.size,
      whiteouts: "overlay",
    });
    return { target, here: opened.get(target)! };
  };
  try {
    // two at once, as two platforms' base layers are
    const bigFile = join(dir, "big.gz");
    const [a, b] = await Promise.all([unpack(bigFile, big), unpack(bigFile, big)]);
    for (const r of [a, b]) {
      assert.equal(r.here, 0, "no file of the large layer was created on this thread");
      assert.deepEqual(
        describeTree(r.target, { mtimes: true }),
        describeTree(tree, { mtimes: true }),
      );
    }
    assert.ok(
      (await unpack(join(dir, "small.gz"), small)).here >= 20,
      "the small layer is unpacked on this thread",
    );
    await assert.rejects(unpack(bigFile, big, `sha256:${"0".repeat(64)}`), {
      code: "E_LAYER_DIGEST",
      message: /layer diffID mismatch/,
    });
  } finally {
    unwatch();
  }
});

test(
  "a layer whose bytes have not started holds no worker thread",
  { timeout: 120_000 },
  async () => {
    const dir = await mkdtemp(join(work, "stalled-"));
    await mkdir(join(dir, "tree"));
    await writeFile(join(dir, "tree", "f"), "one file\n");
    const file = join(dir, "layer.gz");
    const layer = await compressLayer(dirToTar(join(dir, "tree")), file, { compression: "gzip" });
    const bytes = await readFile(file);
    // sized as a large blob, so that each goes to a worker thread
    const apply = async (source: AsyncIterable<Uint8Array>) => {
      const target = await mkdtemp(join(dir, "unpacked-"));
      await unpackLayerBlob(source, layer.mediaType, target, {
        expectedDiffID: layer.diffID,
        blobSize: OFF_THREAD_BYTES,
        whiteouts: "overlay",
      });
      return readFile(join(target, "f"), "utf8");
    };
    // as many downloads as there are workers, still waiting for a connection
    let open!: () => void;
    const connected = new Promise<void>((resolve) => (open = resolve));
    const waiting = Array.from({ length: OFF_THREAD_WORKERS }, () =>
      apply(
        (async function* () {
          await connected;
          yield bytes;
        })(),
      ),
    );
    // one whose bytes flow is unpacked meanwhile (it would wait for a worker forever otherwise)
    assert.equal(await apply(Readable.from([bytes])), "one file\n");
    open();
    assert.deepEqual(await Promise.all(waiting), Array(OFF_THREAD_WORKERS).fill("one file\n"));
  },
);

test("a blob of known size is unpacked as it arrives: its first file is there before the rest is sent", async () => {
  const dir = await mkdtemp(join(work, "arriving-"));
  await mkdir(join(dir, "tree"));
  await writeFile(join(dir, "tree", "first"), "f".repeat(1000));
  await writeFile(join(dir, "tree", "second"), randomBytes(100_000));
  sh("tar", ["-cf", join(dir, "layer.tar"), "-C", join(dir, "tree"), "first", "second"]);
  const tar = await readFile(join(dir, "layer.tar"));
  const diffID = `sha256:${createHash("sha256").update(tar).digest("hex")}`;
  // two gzip members (one gzip stream to any reader): the first one holds "first" whole
  const split = 512 + 1024;
  const members = [gzipSync(tar.subarray(0, split)), gzipSync(tar.subarray(split))];
  const target = await mkdtemp(join(dir, "apply-"));
  let seenEarly = false;
  async function* arriving(): AsyncGenerator<Buffer> {
    yield members[0]!;
    // the rest is held back until the first file is out (or for 3 s, if it never comes)
    for (let waited = 0; waited < 3000 && !seenEarly; waited += 10) {
      seenEarly = existsSync(join(target, "first"));
      if (!seenEarly) await new Promise((r) => setTimeout(r, 10));
    }
    yield members[1]!;
  }
  await applyLayerBlob(arriving(), "application/vnd.oci.image.layer.v1.tar+gzip", target, {
    expectedDiffID: diffID,
    whiteouts: "delete",
    blobSize: members[0]!.length + members[1]!.length,
  });
  assert.ok(seenEarly, "the first file was unpacked before the blob's end arrived");
  assert.equal((await readFile(join(target, "second"))).length, 100_000);
});

test("a compression whose blob writer fails stops reading the tar and closes its source", async () => {
  let closed = false;
  async function* tar(): AsyncGenerator<Buffer> {
    try {
      for (let i = 0; i < 64; i++) {
        await new Promise((r) => setImmediate(r)); // a source that reads, as a walk does
        yield randomBytes(64 * 1024);
      }
    } finally {
      closed = true;
    }
  }
  for (const writeFile of [undefined, () => Promise.reject(new Error("disk full"))]) {
    closed = false;
    await assert.rejects(
      compressLayerTo(tar(), () => Promise.reject(new Error("disk full")), {
        compression: "gzip",
        ...(writeFile ? { writeFile } : {}),
      }),
      /disk full/,
    );
    // the source's cleanup runs once the generator is returned (a turn of the event loop)
    await new Promise((r) => setImmediate(r));
    assert.ok(closed, `source closed (${writeFile ? "program" : "stream"} path)`);
  }
});
