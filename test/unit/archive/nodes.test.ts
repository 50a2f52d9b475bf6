import { test } from "node:test";
import assert from "node:assert/strict";
import { splitDev } from "../../../src/archive/index.js";

test("splitDev decodes Linux dev_t as glibc does (small and large majors and minors)", () => {
  assert.deepEqual(splitDev(0x0103), { major: 1, minor: 3 }); // /dev/null
  assert.deepEqual(splitDev(0n), { major: 0, minor: 0 }); // an overlay whiteout
  // major 259 and minor 0x12345 need the high bits: minor's bits 8..19 sit at 20..31
  const dev = (259n << 8n) | 0x45n | (0x123n << 20n);
  assert.deepEqual(splitDev(dev), { major: 259, minor: 0x12345 });
  // a major's bits above 0xfff sit at bit 32 and up, in place
  assert.deepEqual(splitDev((0x1000n << 32n) | (0x7n << 8n)), { major: 0x1007, minor: 0 });
});
