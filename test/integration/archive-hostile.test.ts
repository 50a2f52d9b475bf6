// Hostile layers: each crafted archive must fail with a KilnError (or, where Docker semantics
// say so, be contained inside the target) and leave everything outside the target untouched.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { isKilnError } from "../../src/errors.js";
import {
  applyLayer,
  applyLayerBlob,
  encodeTar,
  type ApplyOptions,
  type TarEntry,
  type TarInput,
} from "../../src/archive/index.js";
import { extractArchive } from "../../src/fileops/index.js";
import { describeTree, fixChecksum, padded, rawHeader, sh } from "../unit/archive/fixtures.js";

let work: string;
let canary: string;
let canaryBefore: ReturnType<typeof describeTree>;
let n = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "kiln-archive-hostile-"));
  canary = join(work, "canary");
  await mkdir(join(canary, "dir"), { recursive: true });
  await writeFile(join(canary, "secret"), "do not touch\n");
  await writeFile(join(canary, "dir/inner"), "inner\n");
  canaryBefore = describeTree(canary, { mtimes: true });
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

function e(name: string, over: Partial<TarEntry> = {}): TarEntry {
  return {
    name,
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    xattrs: {},
    ...over,
  };
}

function file(name: string, text: string): TarInput {
  return { entry: e(name, { size: Buffer.byteLength(text) }), body: Buffer.from(text) };
}

async function tar(inputs: TarInput[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of encodeTar(inputs)) out.push(c);
  return Buffer.concat(out);
}

async function newTarget(): Promise<string> {
  const t = join(work, `target-${++n}`);
  await mkdir(t);
  return t;
}

function assertHostUntouched(): void {
  assert.deepEqual(describeTree(canary, { mtimes: true }), canaryBefore);
}

async function expectRejected(
  archive: Buffer,
  code: string,
  opts: Partial<ApplyOptions> = {},
  entryName?: string,
): Promise<void> {
  const target = await newTarget();
  await assert.rejects(
    applyLayer(Readable.from([archive]), target, { whiteouts: "delete", ...opts }),
    (err: unknown) => {
      assert.ok(isKilnError(err), `not a KilnError: ${String(err)}`);
      assert.equal(err.code, code, err.message);
      if (entryName !== undefined)
        assert.ok(err.message.includes(JSON.stringify(entryName)), err.message);
      return true;
    },
  );
  assertHostUntouched();
  assert.deepEqual(
    (await readdir(work)).filter((x) => !x.startsWith("target-")).sort(),
    ["canary"],
    "nothing was created next to the targets",
  );
}

const UNSAFE: [string, () => TarInput[], Partial<ApplyOptions>?][] = [
  ["traversal ../x", () => [file("../x", "pwned")]],
  ["traversal a/../../x", () => [file("a/../../x", "pwned")]],
  ["absolute path with ..", () => [file("/../canary/pwned", "pwned")]],
  [
    "absolute symlink, then a write through it",
    () => [{ entry: e("evil", { type: "symlink", linkname: canary }) }, file("evil/pwned", "x")],
  ],
  [
    "relative symlink escaping, then a write through it",
    () => [{ entry: e("up", { type: "symlink", linkname: "../canary" }) }, file("up/pwned", "x")],
  ],
  [
    "symlink chain to outside, then a write through it",
    () => [
      { entry: e("a", { type: "symlink", linkname: "b" }) },
      { entry: e("b", { type: "symlink", linkname: canary }) },
      file("a/pwned", "x"),
    ],
  ],
  [
    "hardlink escaping the root",
    () => [{ entry: e("h", { type: "hardlink", linkname: "../canary/secret" }) }],
  ],
  [
    "hardlink to a symlink pointing outside",
    () => [
      { entry: e("s", { type: "symlink", linkname: join(canary, "secret") }) },
      { entry: e("h", { type: "hardlink", linkname: "s" }) },
    ],
  ],
  [
    "hardlink through a symlinked directory",
    () => [
      { entry: e("d", { type: "symlink", linkname: canary }) },
      { entry: e("h", { type: "hardlink", linkname: "d/secret" }) },
    ],
  ],
  [
    "hardlink to a nonexistent target",
    () => [{ entry: e("h", { type: "hardlink", linkname: "nope" }) }],
  ],
  [
    "device node when devices are not permitted",
    () => [{ entry: e("null", { type: "char", devmajor: 1, devminor: 3 }) }],
    { allowDevices: false },
  ],
  ["whiteout of ..", () => [{ entry: e("sub/.wh...") }]],
  [
    "whiteout through a symlink (would delete outside)",
    () => [{ entry: e("d", { type: "symlink", linkname: canary }) }, { entry: e("d/.wh.secret") }],
  ],
  [
    "opaque whiteout through a symlink (would empty a host dir)",
    () => [
      { entry: e("d", { type: "symlink", linkname: canary }) },
      { entry: e("d/.wh..wh..opq") },
    ],
  ],
  [
    "overlay whiteout through a symlink (would mknod outside)",
    () => [{ entry: e("d", { type: "symlink", linkname: canary }) }, { entry: e("d/.wh.new") }],
    { whiteouts: "overlay" },
  ],
];

for (const [label, build, opts] of UNSAFE) {
  test(`rejects ${label} (E_LAYER_UNSAFE)`, async () => {
    const inputs = build();
    await expectRejected(await tar(inputs), "E_LAYER_UNSAFE", opts, inputs.at(-1)!.entry.name);
  });
}

test("rejects a PAX path that escapes, whatever the ustar name says", async () => {
  const pax = Buffer.from("22 path=../../pwned-x\n");
  const archive = Buffer.concat([
    rawHeader("PaxHeaders/innocent", "x", pax.length),
    padded(pax),
    rawHeader("innocent", "0", 0),
    Buffer.alloc(1024),
  ]);
  await expectRejected(archive, "E_LAYER_UNSAFE", {}, "../../pwned-x");
});

test("rejects a GNU long name that escapes", async () => {
  const name = Buffer.from("../../pwned-long\0");
  const archive = Buffer.concat([
    rawHeader("././@LongLink", "L", name.length),
    padded(name),
    rawHeader("innocent", "0", 0),
    Buffer.alloc(1024),
  ]);
  await expectRejected(archive, "E_LAYER_UNSAFE");
});

test("rejects a giant PAX header, truncation, bad checksum, negative and overflowing sizes (E_LAYER_INVALID)", async () => {
  const good = await tar([file("a", "x".repeat(700))]);
  await expectRejected(
    Buffer.concat([rawHeader("p", "x", 64 * 1024 * 1024), Buffer.alloc(1024)]),
    "E_LAYER_INVALID",
  );
  await expectRejected(good.subarray(0, 900), "E_LAYER_INVALID");
  const badSum = Buffer.from(good);
  badSum[3] = badSum[3]! ^ 1;
  await expectRejected(badSum, "E_LAYER_INVALID");
  const negative = Buffer.from(good);
  negative.fill(0xff, 124, 136);
  fixChecksum(negative, 0);
  await expectRejected(negative, "E_LAYER_INVALID");
  const overflow = Buffer.from(good);
  overflow[124] = 0x80;
  overflow.fill(0xff, 125, 136);
  fixChecksum(overflow, 0);
  await expectRejected(overflow, "E_LAYER_INVALID");
});

async function expectBlobRejected(
  blob: Buffer,
  mediaType: string | undefined,
  expectedDiffID: string,
  code: string,
) {
  const target = await newTarget();
  await assert.rejects(
    applyLayerBlob(Readable.from([blob]), mediaType, target, {
      expectedDiffID,
      whiteouts: "overlay",
    }),
    (err: unknown) => {
      assert.ok(isKilnError(err), `not a KilnError: ${String(err)}`);
      assert.equal(err.code, code, err.message);
      return true;
    },
  );
  assertHostUntouched();
}

test("rejects truncated gzip and zstd blobs and a wrong diffID", async () => {
  const plain = await tar([file("a", "y".repeat(100_000)), file("b", "z")]);
  const diffID = `sha256:${createHash("sha256").update(plain).digest("hex")}`;
  const gz = gzipSync(plain);
  await expectBlobRejected(
    gz.subarray(0, gz.length - 20),
    "application/vnd.oci.image.layer.v1.tar+gzip",
    diffID,
    "E_LAYER_INVALID",
  );
  await expectBlobRejected(gz.subarray(0, gz.length - 20), undefined, diffID, "E_LAYER_INVALID");
  const zst = Buffer.from(sh("sh", ["-c", "zstd -q -c | base64 -w0"], plain), "base64");
  await expectBlobRejected(
    zst.subarray(0, zst.length - 10),
    "application/vnd.oci.image.layer.v1.tar+zstd",
    diffID,
    "E_LAYER_INVALID",
  );
  await expectBlobRejected(gz, undefined, `sha256:${"0".repeat(64)}`, "E_LAYER_DIGEST");
});

test("contained, not rejected: absolute names are re-rooted and symlinks are replaced, never written through", async () => {
  const target = await newTarget();
  const archive = await tar([
    file(join(canary, "pwned"), "inside"),
    { entry: e("f", { type: "symlink", linkname: join(canary, "secret") }) },
    file("f", "replaces the symlink"),
  ]);
  await applyLayer(Readable.from([archive]), target, { whiteouts: "delete" });
  assertHostUntouched();
  const tree = describeTree(target);
  assert.equal(tree[join(canary, "pwned").slice(1)]!.type, "file");
  assert.equal(tree["f"]!.type, "file");
});

// The deferred-metadata class, for both users of the one extractor (layer apply in both
// whiteout modes, and ADD of a local archive): an archive lists a directory and later puts a
// symlink (or something else) where it or a parent was, so that metadata applied after the
// last entry — directory mode and mtime — or a later write, link or node would land outside.
// The host sentinel is compared in full (every node's type, mode, owner, mtime in ns, content).

const SENTINEL_MTIME = 1_500_000_000;

async function makeSentinel(): Promise<string> {
  const host = join(work, "sentinel");
  await mkdir(join(host, "b", "deep"), { recursive: true });
  await writeFile(join(host, "secret"), "host secret\n");
  await writeFile(join(host, "b", "file"), "host file\n");
  for (const [p, mode] of [
    ["b/deep", 0o700],
    ["b", 0o700],
    ["", 0o750],
  ] as const) {
    await chmod(join(host, p), mode);
    await utimes(join(host, p), SENTINEL_MTIME, SENTINEL_MTIME);
  }
  return host;
}

async function hostState(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (rel: string): Promise<void> => {
    const p = rel === "" ? root : join(root, rel);
    const st = await lstat(p, { bigint: true });
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeNs} ${st.nlink}`;
    if (st.isFile())
      what += ` ${createHash("sha256")
        .update(await readFile(p))
        .digest("hex")}`;
    out[rel === "" ? "." : rel] = what;
    if (st.isDirectory()) for (const c of (await readdir(p)).sort()) await visit(join2(rel, c));
  };
  await visit("");
  return out;
}

function join2(a: string, b: string): string {
  return a === "" ? b : `${a}/${b}`;
}

/** ADD of a local archive (the file lives only while it is extracted). */
async function addArchive(archive: Buffer, target: string, name: string): Promise<void> {
  const file = join(work, `add-${++n}.tar`);
  await writeFile(file, archive);
  try {
    await extractArchive(file, target, { name });
  } finally {
    await rm(file);
  }
}

type Extract = { label: string; code: string; run(archive: Buffer, target: string): Promise<void> };

const EXTRACTORS: Extract[] = [
  ...(["delete", "overlay"] as const).map((whiteouts): Extract => ({
    label: `layer apply (${whiteouts})`,
    code: "E_LAYER_UNSAFE",
    run: (archive, target) => applyLayer(Readable.from([archive]), target, { whiteouts }),
  })),
  {
    label: "ADD",
    code: "E_ADD_UNSAFE",
    run: (archive, target) => addArchive(archive, target, "/evil.tar"),
  },
];

const dir = (name: string, over: Partial<TarEntry> = {}): TarInput => ({
  entry: e(name, { type: "dir", mode: 0o777, mtime: 0, ...over }),
});
const link = (name: string, linkname: string): TarInput => ({
  entry: e(name, { type: "symlink", linkname }),
});

/** [label, archive given the sentinel path, whether only layers refuse it (ADD extracts `.wh.` names as files)] */
const DEFERRED: [string, (host: string) => TarInput[], "layers"?][] = [
  [
    "a/ and a/b/ listed, then a swapped for an absolute symlink to a host dir",
    (host) => [dir("a/"), dir("a/b/"), link("a", host)],
  ],
  [
    "a/ and a/b/ listed, then a swapped for a relative symlink climbing out",
    () => [dir("a/"), dir("a/b/"), link("a", "../sentinel")],
  ],
  [
    "the listed directory itself swapped (its deferred mtime would hit the host dir)",
    (host) => [dir("b/", { mtime: 1 }), link("b", join(host, "b"))],
  ],
  [
    "a deeper parent swapped after its children were listed",
    (host) => [dir("x/"), dir("x/y/"), dir("x/y/b/"), dir("x/y/b/deep/"), link("x/y", host)],
  ],
  [
    "a file written through the swapped directory",
    (host) => [dir("a/"), link("a", host), file("a/pwned", "x")],
  ],
  [
    "a file written through an absolute symlink parent",
    (host) => [link("d", host), file("d/b/pwned", "x")],
  ],
  [
    "a directory made through an absolute symlink parent",
    (host) => [link("d", host), dir("d/b/new/")],
  ],
  ["a climbing name", () => [file("a/../../sentinel/pwned", "x")]],
  ["an absolute name with ..", (host) => [file(`/..${host}/pwned`, "x")]],
  [
    "a hardlink to a host file by ..",
    () => [{ entry: e("h", { type: "hardlink", linkname: "../sentinel/secret" }) }],
  ],
  [
    "a hardlink to a host file through a swapped directory",
    (host) => [
      dir("d/"),
      link("d", host),
      { entry: e("h", { type: "hardlink", linkname: "d/secret" }) },
    ],
  ],
  [
    "a fifo made through a swapped directory",
    (host) => [dir("d/"), link("d", host), { entry: e("d/b/fifo", { type: "fifo" }) }],
  ],
  [
    "a device node made through an absolute symlink parent",
    (host) => [link("d", host), { entry: e("d/null", { type: "char", devmajor: 1, devminor: 3 }) }],
  ],
  [
    "a whiteout made (at the end of the layer) through a swapped directory",
    (host) => [dir("d/"), { entry: e("d/.wh.secret") }, link("d", host)],
    "layers",
  ],
  [
    "an opaque directory through a swapped directory",
    (host) => [dir("d/"), link("d", host), { entry: e("d/.wh..wh..opq") }],
    "layers",
  ],
];

for (const x of EXTRACTORS) {
  for (const [label, build, only] of DEFERRED) {
    if (only === "layers" && x.label === "ADD") continue;
    test(`${x.label}: refuses ${label}, host untouched`, async () => {
      const host = await makeSentinel();
      try {
        const before = await hostState(host);
        const target = await newTarget();
        await assert.rejects(x.run(await tar(build(host)), target), (err: unknown) => {
          assert.ok(isKilnError(err), `not a KilnError: ${String(err)}`);
          assert.equal(err.code, x.code, err.message);
          return true;
        });
        assert.deepEqual(await hostState(host), before);
      } finally {
        await rm(host, { recursive: true, force: true });
      }
    });
  }

  test(`${x.label}: a symlink replaced by a directory entry is contained, host untouched`, async () => {
    const host = await makeSentinel();
    try {
      const before = await hostState(host);
      const target = await newTarget();
      const xattrs = { "user.kiln": Buffer.from("v") };
      await x.run(
        await tar([
          link("b", join(host, "b")),
          dir("b/", { mode: 0o555, mtime: 7, xattrs }),
          dir("b/deep/"),
        ]),
        target,
      );
      assert.deepEqual(await hostState(host), before);
      const st = await lstat(join(target, "b"));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o7777, 0o555);
      assert.equal(st.mtimeMs, 7000);
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });
}

test("ADD: a symlink already in the destination is followed inside it, never to the host", async () => {
  const host = await makeSentinel();
  try {
    const before = await hostState(host);
    const target = await newTarget();
    await symlink(host, join(target, "lib")); // an image's absolute symlink: means target/<host>
    await symlink("../../../../..", join(target, "up")); // clamps at the destination's root
    const archive = await tar([
      dir("lib/b/", { mode: 0o777, mtime: 3 }),
      file("lib/b/file", "inside"),
      dir("up/b/", { mode: 0o711, mtime: 5 }),
    ]);
    await addArchive(archive, target, "/ok.tar");
    assert.deepEqual(await hostState(host), before);
    const inside = join(target, host, "b");
    assert.equal((await lstat(inside)).mode & 0o7777, 0o777);
    assert.equal((await lstat(inside)).mtimeMs, 3000);
    assert.equal(await readFile(join(inside, "file"), "utf8"), "inside");
    assert.equal((await lstat(join(target, "b"))).mode & 0o7777, 0o711);
  } finally {
    await rm(host, { recursive: true, force: true });
  }
});

test("ADD: a destination symlink that leads through one the archive made is refused", async () => {
  const host = await makeSentinel();
  try {
    const before = await hostState(host);
    const target = await newTarget();
    await symlink("/x", join(target, "lib"));
    await assert.rejects(
      addArchive(await tar([link("x", host), file("lib/pwned", "x")]), target, "/evil.tar"),
      (err: unknown) => {
        assert.ok(isKilnError(err), `not a KilnError: ${String(err)}`);
        assert.equal(err.code, "E_ADD_UNSAFE", err.message);
        assert.match(err.message, /archive's own symlink "x"/);
        return true;
      },
    );
    assert.deepEqual(await hostState(host), before);
  } finally {
    await rm(host, { recursive: true, force: true });
  }
});
