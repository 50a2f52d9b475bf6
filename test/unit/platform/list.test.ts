import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../src/errors.js";
import { formatAll, parsePlatformList, type Platform } from "../../../src/platform/index.js";

const ARM64_HOST: Platform = { os: "linux", architecture: "arm64", variant: "v8" };

// [flag values, formatted result]
const listTable: [string[], string[]][] = [
  [["linux/amd64"], ["linux/amd64"]],
  [["linux/amd64,linux/arm64"], ["linux/amd64", "linux/arm64"]],
  [
    ["linux/amd64, linux/arm64 ", "linux/arm/v7"],
    ["linux/amd64", "linux/arm64", "linux/arm/v7"],
  ],
  [["linux/arm64,linux/amd64"], ["linux/arm64", "linux/amd64"]],
  [["linux/arm64", "linux/arm64/v8,linux/aarch64"], ["linux/arm64"]],
  [["linux/arm,linux/arm/v7,linux/armhf"], ["linux/arm/v7"]],
  [["linux/amd64/v1,linux/x86_64,linux/amd64/v2"], ["linux/amd64", "linux/amd64/v2"]],
  [["local"], ["linux/arm64"]],
  [["local,linux/arm64/v8,linux/amd64"], ["linux/arm64", "linux/amd64"]],
  [["arm"], ["linux/arm/v7"]],
  [["windows(10.0.17763+win32k)/amd64"], ["windows(10.0.17763+win32k)/amd64"]],
  [[], []],
];

for (const [values, expected] of listTable) {
  test(`parsePlatformList ${JSON.stringify(values)}`, () => {
    assert.deepEqual(parsePlatformList(values, ARM64_HOST).map(formatAll), expected);
  });
}

for (const values of [
  ["linux/amd64,"],
  [",linux/amd64"],
  ["linux/amd64,,linux/arm64"],
  [""],
  ["linux/amd64", " "],
]) {
  test(`parsePlatformList rejects empty entries in ${JSON.stringify(values)}`, () => {
    assert.throws(
      () => parsePlatformList(values, ARM64_HOST),
      (e: unknown) =>
        e instanceof KilnError && e.code === "E_PLATFORM" && /empty platform/.test(e.message),
    );
  });
}

test("parsePlatformList reports the bad specifier", () => {
  assert.throws(
    () => parsePlatformList(["linux/amd64,linux/arm/v7/x"], ARM64_HOST),
    (e: unknown) =>
      e instanceof KilnError && e.code === "E_PLATFORM" && e.message.includes('"linux/arm/v7/x"'),
  );
});
