import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { isKilnError } from "../../../src/errors.js";
import { fixChecksum, padded, rawHeader } from "./fixtures.js";
import {
  compressionOf,
  encodeTar,
  readTar,
  type TarEntry,
  type TarInput,
} from "../../../src/archive/index.js";

/**
 * sha256 of the tar Go 1.26's archive/tar writes for the entries of the last test below (with
 * 3-byte bodies "xxx"): Header.Format = FormatPAX as containerd's diff writer sets it, then read
 * and written again as BuildKit's rewrite-timestamp pass does.
 */
const GO_TAR_SHA256 = "debe92dfdafdcd46f80128a0197e0ad552d70129dfb9fc4b45e0583c52e8df51";

const CAP = Buffer.from("0100000280808080000000000000000000000000", "hex");

function entry(over: Partial<TarEntry> & { name: string }): TarEntry {
  return {
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1700000000,
    xattrs: {},
    ...over,
  };
}

async function pack(inputs: TarInput[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of encodeTar(inputs)) out.push(c);
  return Buffer.concat(out);
}

async function unpack(tar: Buffer | Buffer[]): Promise<{ entry: TarEntry; data: Buffer }[]> {
  const out: { entry: TarEntry; data: Buffer }[] = [];
  const chunks = Array.isArray(tar) ? tar : [tar];
  for await (const { entry, body } of readTar(Readable.from(chunks))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    out.push({ entry, data: Buffer.concat(parts) });
  }
  return out;
}

async function rejects(tar: Buffer, pattern: RegExp): Promise<void> {
  await assert.rejects(unpack(tar), (e: unknown) => {
    assert.ok(isKilnError(e), `expected KilnError, got ${String(e)}`);
    assert.equal(e.code, "E_LAYER_INVALID");
    assert.match(e.message, pattern);
    return true;
  });
}

test("round trip of every entry type with PAX extensions and binary xattrs", async () => {
  const longName = `${"dir-".repeat(40)}/${"ü".repeat(80)}.txt`;
  const body = Buffer.alloc(1300, 7);
  const inputs: TarInput[] = [
    { entry: entry({ name: "d/", type: "dir", mode: 0o1777, uid: 3000000, gid: 4000000 }) },
    {
      entry: entry({
        name: "d/cap",
        mode: 0o4755,
        size: body.length,
        mtime: 1700000000.25,
        uname: "a-rather-long-user-name-beyond-32-bytes",
        gname: "grp",
        xattrs: { "security.capability": CAP, "user.nl": Buffer.from("a\nb=c\0d") },
      }),
      body,
    },
    { entry: entry({ name: longName, size: 1 }), body: Readable.from([Buffer.from("x")]) },
    { entry: entry({ name: "d/empty" }) },
    { entry: entry({ name: "d/hl", type: "hardlink", linkname: longName }) },
    {
      entry: entry({ name: "d/sl", type: "symlink", mode: 0o777, linkname: "/" + "t".repeat(300) }),
    },
    { entry: entry({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }) },
    { entry: entry({ name: "dev/big", type: "block", devmajor: 259, devminor: 3000000 }) },
    { entry: entry({ name: "fifo", type: "fifo", mtime: -5 }) },
  ];
  const tar = await pack(inputs);
  assert.equal(tar.length % 512, 0);
  assert.deepEqual(
    await pack(
      inputs.map((i) => ({
        ...i,
        body: Buffer.isBuffer(i.body)
          ? i.body
          : i.body === undefined
            ? undefined
            : Buffer.from("x"),
      })),
    ),
    tar,
    "deterministic",
  );
  const got = await unpack(tar);
  assert.deepEqual(
    got.map((g) => g.entry),
    inputs.map((i) => i.entry),
  );
  assert.deepEqual(got[1]!.data, body);
  assert.equal(got[2]!.data.toString(), "x");
});

test("bodies are skipped when the consumer does not read them, with any chunking", async () => {
  const a = Buffer.alloc(70000, 1);
  const tar = await pack([
    { entry: entry({ name: "a", size: a.length }), body: a },
    { entry: entry({ name: "b", size: 3 }), body: Buffer.from("bbb") },
  ]);
  const names: string[] = [];
  for await (const { entry: e } of readTar(Readable.from([tar]))) names.push(e.name);
  assert.deepEqual(names, ["a", "b"]);
  // One byte per chunk exercises every boundary of the reader.
  const tiny = [...tar.subarray(0, 1200)].map((b) => Buffer.from([b]));
  const rest = tar.subarray(1200);
  const got = await unpack([...tiny, rest]);
  assert.deepEqual(got[0]!.data, a);
  assert.equal(got[1]!.data.toString(), "bbb");
});

test("reads GNU long names/links, global PAX headers, base-256 numbers and ustar prefix", async () => {
  const long = "x/".repeat(80) + "file";
  const link = "y".repeat(150);
  const gpax = Buffer.from("25 SCHILY.xattr.user.g=G\n");
  const base256 = rawHeader("b256", "0", 0);
  base256[108] = 0x80; // uid 70000 in base-256
  base256.fill(0, 109, 116);
  base256.writeUInt32BE(70000, 112);
  base256[124] = 0x80; // size 5 in base-256
  base256.fill(0, 125, 136);
  base256[135] = 5;
  fixChecksum(base256, 0);
  const prefixed = rawHeader("name", "0", 0);
  prefixed.write("some/prefix", 345);
  fixChecksum(prefixed, 0);
  const tar = Buffer.concat([
    rawHeader("pax_global_header", "g", gpax.length),
    padded(gpax),
    rawHeader("././@LongLink", "L", long.length + 1),
    padded(Buffer.from(long + "\0")),
    rawHeader("././@LongLink", "K", link.length),
    padded(Buffer.from(link)),
    rawHeader("short", "2", 0),
    base256,
    padded(Buffer.from("hello")),
    prefixed,
    Buffer.alloc(1024),
  ]);
  const got = await unpack(tar);
  assert.equal(got[0]!.entry.name, long);
  assert.equal(got[0]!.entry.type, "symlink");
  assert.equal(got[0]!.entry.linkname, link);
  assert.deepEqual(got[0]!.entry.xattrs, { "user.g": Buffer.from("G") });
  assert.equal(got[1]!.entry.uid, 70000);
  assert.equal(got[1]!.data.toString(), "hello");
  assert.equal(got[2]!.entry.name, "some/prefix/name");
});

test("malformed archives are rejected with E_LAYER_INVALID", async () => {
  const good = await pack([{ entry: entry({ name: "a", size: 600 }), body: Buffer.alloc(600, 1) }]);

  const badSum = Buffer.from(good);
  badSum[0] = 0x62;
  await rejects(badSum, /checksum/);
  await rejects(good.subarray(0, 700), /truncated/);
  await rejects(good.subarray(0, 300), /truncated/);
  await rejects(good.subarray(0, 1536), /truncated/); // no end-of-archive marker

  const negative = Buffer.from(good);
  negative.fill(0xff, 124, 136);
  fixChecksum(negative, 0);
  await rejects(negative, /negative size/);

  const overflow = Buffer.from(good);
  overflow[124] = 0x80;
  overflow.fill(0x7f, 125, 136);
  fixChecksum(overflow, 0);
  await rejects(overflow, /out of range/);

  const notOctal = Buffer.from(good);
  notOctal.write("00000009999\0", 124);
  fixChecksum(notOctal, 0);
  await rejects(notOctal, /not a number/);

  const giant = Buffer.concat([rawHeader("p", "x", 2 * 1024 * 1024), Buffer.alloc(1024)]);
  await rejects(giant, /exceeds the 1 MiB limit/);

  const badPax = Buffer.from("99 path=a\n");
  await rejects(
    Buffer.concat([rawHeader("p", "x", badPax.length), padded(badPax), good]),
    /malformed PAX/,
  );
  await rejects(Buffer.concat([rawHeader("s", "S", 0), Buffer.alloc(1024)]), /unsupported/);
});

test("writer refuses a body that does not match the declared size", async () => {
  await assert.rejects(pack([{ entry: entry({ name: "a", size: 5 }), body: Buffer.from("abc") }]), {
    code: "E_LAYER_SOURCE",
  });
  await assert.rejects(pack([{ entry: entry({ name: "a", size: 1 }), body: Buffer.from("abc") }]), {
    code: "E_LAYER_SOURCE",
  });
});

test("layer media types map to compressions", () => {
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar+gzip"), "gzip");
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar+zstd"), "zstd");
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar"), "uncompressed");
  assert.equal(compressionOf("application/vnd.docker.image.rootfs.diff.tar.gzip"), "gzip");
  assert.equal(
    compressionOf("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
    "gzip",
  );
  assert.throws(() => compressionOf("application/json"), { code: "E_LAYER_MEDIATYPE" });
});

test("a PAX record header is named and stamped as Go's archive/tar writes it", async () => {
  const { encodeHeader } = await import("../../../src/archive/tar-format.js");
  const name = `${"d".repeat(120)}/ünï-${"f".repeat(110)}`;
  const blocks = encodeHeader({
    name,
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1700000000,
    xattrs: {},
  });
  const pax = blocks.subarray(0, 512);
  const cstr = (b: Buffer) => b.toString("latin1").replace(/\0.*$/s, "");
  assert.equal(cstr(pax.subarray(0, 100)), "d".repeat(100));
  assert.equal(String.fromCharCode(pax[156]!), "x");
  assert.equal(cstr(pax.subarray(100, 108)), "0000000"); // mode
  assert.equal(cstr(pax.subarray(136, 148)), "00000000000"); // mtime
  // a short path keeps its directory before PaxHeaders.0
  const short = encodeHeader({
    name: "a/b",
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    xattrs: { "security.capability": Buffer.from([1]) },
  });
  assert.equal(cstr(short.subarray(0, 100)), "a/PaxHeaders.0/b");
});

const cstr = (b: Buffer) => b.toString("latin1").replace(/\0.*$/s, "");

test("a long ASCII name that splits at a slash is plain ustar: prefix and name fields (Go)", async () => {
  const { encodeHeader, splitUstarPath } = await import("../../../src/archive/tar-format.js");
  const a = "a".repeat(60);
  const b = "b".repeat(60);
  for (const [name, prefix, rest] of [
    [`${a}/${b}`, a, b],
    [`${a}/${b}/`, a, `${b}/`],
    [`${"p".repeat(155)}/${"q".repeat(100)}`, "p".repeat(155), "q".repeat(100)],
    [`${"a".repeat(99)}/b`, "a".repeat(99), "b"],
  ] as const) {
    const h = encodeHeader(entry({ name, type: name.endsWith("/") ? "dir" : "file" }));
    assert.equal(h.length, 512, `${name}: no PAX header`);
    assert.equal(cstr(h.subarray(0, 100)), rest);
    assert.equal(cstr(h.subarray(345, 500)), prefix);
    const [back] = await unpack(Buffer.concat([h, Buffer.alloc(1024)]));
    assert.equal(back!.entry.name, name);
  }
  // no slash to split at within 155 bytes, a last part over 100 bytes, or not ASCII: PAX
  for (const name of [
    `${"p".repeat(156)}/q`,
    `deep/${"l".repeat(150)}/`,
    `${"x".repeat(100)}/`,
    `${"a".repeat(60)}/ü${"b".repeat(60)}`,
  ]) {
    assert.equal(splitUstarPath(name), undefined, name);
    const h = encodeHeader(entry({ name, type: name.endsWith("/") ? "dir" : "file" }));
    assert.equal(String.fromCharCode(h[156]!), "x", name);
  }
});

test("a non-ASCII name: a PAX path record, ASCII left in the ustar fields (Go's toASCII)", async () => {
  const { encodeHeader } = await import("../../../src/archive/tar-format.js");
  const file = encodeHeader(entry({ name: "ünï/çå.txt", size: 3 }));
  assert.equal(cstr(file.subarray(0, 100)), "n/PaxHeaders.0/.txt");
  assert.match(file.subarray(512, 1024).toString("utf8"), /^23 path=ünï\/çå\.txt\n/);
  assert.equal(cstr(file.subarray(1024, 1124)), "n/.txt");
  // a directory's record header sits inside it: path.Split("ünï/") = ("ünï/", "")
  const dir = encodeHeader(entry({ name: "ünï/", type: "dir" }));
  assert.equal(cstr(dir.subarray(0, 100)), "n/PaxHeaders.0");
  // a name cut at 100 bytes ending in "/" is NUL-terminated before the slashes
  const cut = encodeHeader(entry({ name: `${"x".repeat(97)}///ü-abc` }));
  const field = cut.subarray(1024, 1124);
  assert.equal(cstr(field), "x".repeat(97));
  assert.equal(field.toString("latin1", 98, 100), "//");
  // the record header has no device fields; the entry's own header has zeros there
  assert.equal(cstr(dir.subarray(329, 337)), "");
  assert.equal(cstr(dir.subarray(512 + 512 + 329, 512 + 512 + 337)), "0000000");
});

test("layer tar bytes are those of Go's archive/tar as BuildKit writes layers", async () => {
  const { createHash } = await import("node:crypto");
  const r = (c: string, n: number) => c.repeat(n);
  const d = (name: string, over: Partial<TarEntry> = {}): TarInput => ({
    entry: entry({ name, type: "dir", mode: 0o755, ...over }),
  });
  const f = (name: string, over: Partial<TarEntry> = {}): TarInput => ({
    entry: entry({ name, size: 3, ...over }),
    body: Buffer.from("xxx"),
  });
  const l = (name: string, type: "symlink" | "hardlink", linkname: string): TarInput => ({
    entry: entry({ name, type, linkname }),
  });
  const tar = await pack([
    f("a.txt"),
    d(`${r("d", 120)}/`),
    d(`${r("d", 120)}/${r("e", 115)}/`),
    f(`${r("d", 120)}/${r("e", 115)}/${r("f", 100)}`),
    f(`${r("a", 60)}/${r("b", 60)}`),
    d(`${r("a", 60)}/${r("b", 60)}/`),
    d("ünï/"),
    f("ünï/çå.txt"),
    f(r("x", 100)),
    d(`${r("x", 100)}/`),
    f(`${r("x", 97)}///üabc`),
    f(`${r("y", 99)}/${r("ü", 30)}`),
    f("cap", { xattrs: { "security.capability": CAP } }),
    d("capdir/", { xattrs: { "user.x": Buffer.from("1") } }),
    l("lnk", "symlink", r("t", 120)),
    l("lnk2", "symlink", "tü"),
    l("hl", "hardlink", `${r("h", 60)}/${r("i", 60)}`),
    f("big", { uid: 3000000, gid: 5 }),
    f("un", { uname: "üser", gname: "g" }),
    f("zz/ßßßßß", { uname: r("u", 40) }),
    f(`${r("p", 155)}/${r("q", 100)}`),
    f(`${r("p", 156)}/${r("q", 10)}`),
    d(`${r("p", 154)}/q/`),
    { entry: entry({ name: "fifo", type: "fifo" }) },
    { entry: entry({ name: "dev", type: "char", devmajor: 1, devminor: 3 }) },
    { entry: entry({ name: `.wh.${r("z", 120)}`, mode: 0, mtime: 0 }) },
    f(r("a", 300)),
  ]);
  // Go 1.26 archive/tar, Header.Format = FormatPAX (containerd's diff writer), then read and
  // written again (BuildKit's rewrite-timestamp pass), for the same entries
  assert.equal(createHash("sha256").update(tar).digest("hex"), GO_TAR_SHA256);
});
