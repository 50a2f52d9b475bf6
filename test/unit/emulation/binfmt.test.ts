import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../src/errors.js";
import {
  BINFMT_ARCHES,
  binfmtArch,
  magicMatches,
  PROBE_ARCHITECTURES,
  probeBinary,
  qemuArch,
  registerLine,
} from "../../../src/emulation/index.js";

test("registerLine is tonistiigi/binfmt's line for aarch64", () => {
  assert.equal(
    registerLine(binfmtArch("arm64"), "/usr/bin/qemu-aarch64", "CF"),
    ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:" +
      "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64:CF",
  );
});

test("each magic/mask claims its own probe and no other", () => {
  for (const entry of BINFMT_ARCHES) {
    const magic = Buffer.from(entry.magic, "hex");
    const mask = Buffer.from(entry.mask, "hex");
    assert.equal(magic.length, 20, entry.architecture);
    assert.equal(mask.length, 20, entry.architecture);
    assert.equal(entry.qemuArch, qemuArch(entry.architecture));
    for (const arch of PROBE_ARCHITECTURES) {
      assert.equal(
        magicMatches(probeBinary(arch)!, 0, magic, mask),
        arch === entry.architecture,
        `${entry.qemuArch} vs ${arch} probe`,
      );
    }
  }
});

test("binfmtArch accepts Go names, QEMU names and platforms", () => {
  assert.equal(binfmtArch("aarch64").architecture, "arm64");
  assert.equal(binfmtArch("linux/arm/v7").qemuArch, "arm");
  assert.equal(binfmtArch("mips64le").qemuArch, "mips64el");
  assert.equal(binfmtArch("loong64").qemuArch, "loongarch64");
  assert.throws(
    () => binfmtArch("vax"),
    (e) => e instanceof KilnError && e.code === "E_BINFMT_ARCH" && /arm64/.test(e.hint ?? ""),
  );
});
