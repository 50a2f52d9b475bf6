import { test } from "node:test";
import assert from "node:assert/strict";
import { formatBytes, formatLogLine, formatTransfer } from "../../../src/progress/format.js";
import {
  colorEnabled,
  displayWidth,
  fitLine,
  paint,
  sanitizeLine,
  truncate,
} from "../../../src/progress/terminal.js";

test("display width counts wide characters as two columns and combining marks as none", () => {
  assert.equal(displayWidth("abc"), 3);
  assert.equal(displayWidth("漢字a"), 5);
  assert.equal(displayWidth("e\u0301"), 1);
  assert.equal(displayWidth("🚀 go"), 5);
  assert.equal(displayWidth("ｈｉ"), 4);
});

test("truncation never splits a wide character", () => {
  assert.equal(truncate("漢字漢", 3), "漢");
  assert.equal(truncate("漢字漢", 4), "漢字");
  assert.equal(truncate("abc", 10), "abc");
  assert.equal(truncate("abc", 0), "");
});

test("fitted lines use width - 1 columns with the right part flush right", () => {
  assert.equal(fitLine("abc", "1.0s", 10), "abc  1.0s");
  assert.equal(fitLine("abcdefghij", "1.0s", 10), "abcd 1.0s");
  assert.equal(fitLine("漢字漢字", "1.0s", 10), "漢字 1.0s");
  assert.equal(fitLine("abcdefghij", "", 6), "abcde");
});

test("log lines are cleaned of escapes, carriage-return redraws, tabs and control characters", () => {
  assert.equal(sanitizeLine("\x1b[31mred\x1b[0m"), "red");
  assert.equal(sanitizeLine("10%\r50%"), "50%");
  assert.equal(sanitizeLine("a\tb"), "a    b");
  assert.equal(sanitizeLine("\x1b]8;;http://x\x07link\x1b]8;;\x07"), "link");
  assert.equal(sanitizeLine("bell\x07 nul\x00"), "bell nul");
});

test("colors follow NO_COLOR", () => {
  assert.equal(colorEnabled({}), true);
  assert.equal(colorEnabled({ NO_COLOR: "" }), true);
  assert.equal(colorEnabled({ NO_COLOR: "1" }), false);
  assert.equal(paint(true, "red", "x"), "\x1b[31mx\x1b[39m");
  assert.equal(paint(false, "red", "x"), "x");
});

test("sizes are decimal SI with two decimals, as BuildKit prints them", () => {
  assert.equal(formatBytes(0), "0B");
  assert.equal(formatBytes(999), "999B");
  assert.equal(formatBytes(1000), "1.00kB");
  assert.equal(formatBytes(3_400_000), "3.40MB");
  assert.equal(formatBytes(1_500_000_000), "1.50GB");
  assert.equal(formatTransfer(0, undefined), "");
  assert.equal(formatTransfer(2048, undefined), "2.05kB");
  assert.equal(formatTransfer(5, 10), "5B / 10B");
  assert.equal(formatLogLine({ seconds: 0.5, text: "x" }), "0.500 x");
});
