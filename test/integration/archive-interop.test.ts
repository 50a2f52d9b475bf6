// Our tar codec against the reference implementations on this machine: GNU tar 1.34 and
// Python's tarfile, in both directions, including a security.capability with bytes >= 0x80.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile, link, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { getAttributeSync, setAttributeSync } from "@napi-rs/xattr";
import { dirToTar, readTar, type TarEntry } from "../../src/archive/index.js";
import { BINARY_CAP, describeTree, sh } from "../unit/archive/fixtures.js";

let work: string;
let src: string;
const LONG = `${"deep-directory-name/".repeat(8)}${"f".repeat(120)}`;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "kiln-archive-interop-"));
  src = join(work, "src");
  await mkdir(join(src, LONG, ".."), { recursive: true });
  await writeFile(join(src, "cap"), "capable\n");
  sh("setcap", [BINARY_CAP, join(src, "cap")]);
  await writeFile(join(src, "suid"), "s", { mode: 0o4750 });
  sh("chmod", ["4750", join(src, "suid")]);
  await writeFile(join(src, LONG), Buffer.alloc(5000, 0xab));
  await link(join(src, LONG), join(src, "hard"));
  await symlink("cap", join(src, "sym"));
  await symlink("/" + "l".repeat(200), join(src, "longsym"));
  sh("mkfifo", [join(src, "fifo")]);
  sh("mknod", [join(src, "null"), "c", "1", "3"]);
  setAttributeSync(join(src, "suid"), "user.note", Buffer.from([0, 0xff, 0x0a, 0x3d]));
  sh("chown", ["1234:5678", join(src, "suid")]);
  sh("chmod", ["4750", join(src, "suid")]); // chown cleared the setuid bit
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function readAll(file: string): Promise<Map<string, { entry: TarEntry; data: Buffer }>> {
  const out = new Map<string, { entry: TarEntry; data: Buffer }>();
  for await (const { entry, body } of readTar(createReadStream(file))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    out.set(entry.name.replace(/^\.\//, "").replace(/\/$/, ""), {
      entry,
      data: Buffer.concat(parts),
    });
  }
  return out;
}

const CAP_BYTES = (): Buffer => getAttributeSync(join(src, "cap"), "security.capability")!;

test("binary capability fixture really has bytes >= 0x80", () => {
  assert.ok(CAP_BYTES().some((b) => b >= 0x80));
});

for (const format of ["pax", "gnu"] as const) {
  test(`reads GNU tar --format=${format} output`, async () => {
    const file = join(work, `gnu-${format}.tar`);
    const xattrArgs = format === "pax" ? ["--xattrs", "--xattrs-include=*"] : [];
    sh("tar", [...xattrArgs, `--format=${format}`, "--numeric-owner", "-C", src, "-cf", file, "."]);
    const got = await readAll(file);
    const big = got.get(LONG)!;
    assert.equal(big.entry.size, 5000);
    assert.deepEqual(big.data, Buffer.alloc(5000, 0xab));
    assert.equal(got.get("hard")!.entry.type, "hardlink");
    assert.equal(got.get("hard")!.entry.linkname!.replace(/^\.\//, ""), LONG);
    assert.equal(got.get("longsym")!.entry.linkname, "/" + "l".repeat(200));
    assert.equal(got.get("fifo")!.entry.type, "fifo");
    const nul = got.get("null")!.entry;
    assert.deepEqual([nul.type, nul.devmajor, nul.devminor], ["char", 1, 3]);
    const suid = got.get("suid")!.entry;
    assert.deepEqual([suid.mode, suid.uid, suid.gid], [0o4750, 1234, 5678]);
    if (format === "pax") {
      assert.deepEqual(got.get("cap")!.entry.xattrs["security.capability"], CAP_BYTES());
      assert.deepEqual(suid.xattrs["user.note"], Buffer.from([0, 0xff, 0x0a, 0x3d]));
    }
  });
}

test("GNU tar extracts our output exactly (getcap sees the binary capability)", async () => {
  const file = join(work, "ours.tar");
  await pipeline(dirToTar(src), createWriteStream(file));
  const listing = sh("tar", ["--numeric-owner", "-tvf", file]);
  assert.match(listing, /hrw-r--r-- 0\/0 +0 .* hard link to deep-directory-name/);
  const out = join(work, "gnu-extracted");
  await mkdir(out);
  sh("tar", ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", file, "-C", out]);
  assert.deepEqual(describeTree(out, { mtimes: true }), describeTree(src, { mtimes: true }));
  assert.match(
    sh("getcap", [join(out, "cap")]),
    /cap_setuid,cap_ipc_owner,cap_sys_nice,cap_setfcap=eip/,
  );
});

const PY_READ = `
import sys, tarfile, json
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        x = {k[13:]: v.encode("utf-8", "surrogateescape").hex() for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        out.append({"name": m.name, "type": m.type.decode(), "mode": m.mode, "uid": m.uid, "gid": m.gid,
                    "size": m.size, "linkname": m.linkname, "xattrs": x})
print(json.dumps(out))
`;

test("python tarfile reads our output, binary xattr bytes intact", async () => {
  const file = join(work, "ours-py.tar");
  await pipeline(dirToTar(src), createWriteStream(file));
  const members = JSON.parse(sh("python3", ["-c", PY_READ, file])) as {
    name: string;
    type: string;
    mode: number;
    uid: number;
    size: number;
    linkname: string;
    xattrs: Record<string, string>;
  }[];
  const byName = new Map(members.map((m) => [m.name, m]));
  assert.equal(byName.get("cap")!.xattrs["security.capability"], CAP_BYTES().toString("hex"));
  assert.equal(byName.get("suid")!.xattrs["user.note"], "00ff0a3d");
  assert.equal(byName.get("suid")!.mode, 0o4750);
  assert.equal(byName.get(LONG)!.size, 5000);
  assert.equal(byName.get("hard")!.type, "1");
  assert.equal(byName.get("hard")!.linkname, LONG);
  assert.equal(byName.get("longsym")!.linkname, "/" + "l".repeat(200));
  assert.equal(byName.get("fifo")!.type, "6");
});

const PY_WRITE = `
import sys, tarfile, io
cap = bytes.fromhex(sys.argv[2]).decode("utf-8", "surrogateescape")
with tarfile.open(sys.argv[1], "w", format=int(sys.argv[3])) as t:
    data = b"hello from python"
    ti = tarfile.TarInfo("p/" + "n" * 150)
    ti.size = len(data); ti.mode = 0o2755; ti.uid = 3000000; ti.gid = 7; ti.mtime = 1234567890
    if t.format == tarfile.PAX_FORMAT:
        ti.pax_headers = {"SCHILY.xattr.security.capability": cap}
    t.addfile(ti, io.BytesIO(data))
    li = tarfile.TarInfo("p/link"); li.type = tarfile.SYMTYPE; li.linkname = "x" * 120
    t.addfile(li)
`;

for (const [label, fmt] of [
  ["PAX", 2],
  ["GNU", 1],
] as const) {
  test(`reads python tarfile ${label} output`, async () => {
    const file = join(work, `py-${label}.tar`);
    sh("python3", ["-c", PY_WRITE, file, CAP_BYTES().toString("hex"), String(fmt)]);
    const got = await readAll(file);
    const f = got.get("p/" + "n".repeat(150))!;
    assert.equal(f.data.toString(), "hello from python");
    assert.deepEqual(
      [f.entry.mode, f.entry.uid, f.entry.gid, f.entry.mtime],
      [0o2755, 3000000, 7, 1234567890],
    );
    if (fmt === 2) assert.deepEqual(f.entry.xattrs["security.capability"], CAP_BYTES());
    assert.equal(got.get("p/link")!.entry.linkname, "x".repeat(120));
  });
}
