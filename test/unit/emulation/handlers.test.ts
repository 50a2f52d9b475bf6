import { test } from "node:test";
import assert from "node:assert/strict";
import { magicMatches, parseBinfmtEntry, probeBinary } from "../../../src/emulation/index.js";

test("parseBinfmtEntry reads a magic entry and names its architecture", () => {
  const h = parseBinfmtEntry(
    "qemu-aarch64",
    [
      "enabled",
      "interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P",
      "flags: PF",
      "offset 0",
      "magic 7f454c460201010000000000000000000200b700",
      "mask ffffffffffffff00fffffffffffffffffeffffff",
      "",
    ].join("\n"),
  );
  assert.equal(h.enabled, true);
  assert.equal(h.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
  assert.equal(h.flags, "PF");
  assert.equal(h.offset, 0);
  assert.equal(h.magic?.length, 20);
  assert.equal(h.architecture, "arm64");
});

test("parseBinfmtEntry reads disabled and extension entries", () => {
  const h = parseBinfmtEntry(
    "jar",
    "disabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n",
  );
  assert.equal(h.enabled, false);
  assert.equal(h.flags, "");
  assert.equal(h.extension, ".jar");
  assert.equal(h.architecture, undefined);
});

test("magicMatches applies the mask", () => {
  const head = probeBinary("amd64")!;
  const magic = Buffer.from("7f454c4602010100000000000000000002003e00", "hex");
  const mask = Buffer.from("fffffffffffefe00fffffffffffffffffeffffff", "hex");
  assert.ok(magicMatches(head, 0, magic, mask));
  const pie = head.slice();
  pie[16] = 3; // ET_DYN passes the 0xfe mask on e_type
  assert.ok(magicMatches(pie, 0, magic, mask));
  assert.ok(!magicMatches(probeBinary("386")!, 0, magic, mask));
  assert.ok(!magicMatches(head.subarray(0, 10), 0, magic, mask));
  assert.ok(
    magicMatches(Buffer.from("xxPK\x03\x04"), 2, Buffer.from("504b0304", "hex"), undefined),
  );
});
