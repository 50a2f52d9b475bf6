import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../src/errors.js";
import {
  equal,
  format,
  formatAll,
  normalize,
  parse,
  parseNormalized,
  type Platform,
} from "../../../src/platform/index.js";

// Fixed hosts so single-component specifiers resolve the same on every machine.
const AMD64: Platform = { os: "linux", architecture: "amd64" };
const ARM_V6: Platform = { os: "linux", architecture: "arm", variant: "v6" };
const ARM_V7: Platform = { os: "linux", architecture: "arm", variant: "v7" };
const ARM64: Platform = { os: "linux", architecture: "arm64", variant: "v8" };
const DARWIN_ARM64: Platform = { os: "darwin", architecture: "arm64", variant: "v8" };

function pl(
  os: string,
  architecture: string,
  variant?: string,
  extra: Partial<Platform> = {},
): Platform {
  const p: Platform = { os, architecture, ...extra };
  if (variant !== undefined) p.variant = variant;
  return p;
}

// [specifier, host, Parse result, Format(Parse), FormatAll(Normalize(Parse))]
const parseTable: [string, Platform, Platform, string, string][] = [
  ["linux/arm64", AMD64, pl("linux", "arm64"), "linux/arm64", "linux/arm64"],
  ["linux/arm64/v8", AMD64, pl("linux", "arm64", "v8"), "linux/arm64/v8", "linux/arm64"],
  ["linux/arm64/8", AMD64, pl("linux", "arm64", "v8"), "linux/arm64/v8", "linux/arm64"],
  ["linux/arm64/v8.0", AMD64, pl("linux", "arm64", "v8"), "linux/arm64/v8", "linux/arm64"],
  ["linux/arm64/v8.2", AMD64, pl("linux", "arm64", "v8.2"), "linux/arm64/v8.2", "linux/arm64/v8.2"],
  ["linux/arm64/v9", AMD64, pl("linux", "arm64", "v9"), "linux/arm64/v9", "linux/arm64/v9"],
  ["linux/arm64/9", AMD64, pl("linux", "arm64", "v9"), "linux/arm64/v9", "linux/arm64/v9"],
  ["linux/arm64/9.0", AMD64, pl("linux", "arm64", "v9"), "linux/arm64/v9", "linux/arm64/v9"],
  ["linux/arm64/v9.0", AMD64, pl("linux", "arm64", "v9"), "linux/arm64/v9", "linux/arm64/v9"],
  ["linux/arm64/v9.3", AMD64, pl("linux", "arm64", "v9.3"), "linux/arm64/v9.3", "linux/arm64/v9.3"],
  ["linux/aarch64", AMD64, pl("linux", "arm64"), "linux/arm64", "linux/arm64"],
  ["linux/aarch64/v8", AMD64, pl("linux", "arm64", "v8"), "linux/arm64/v8", "linux/arm64"],
  ["linux/arm", AMD64, pl("linux", "arm"), "linux/arm", "linux/arm/v7"],
  ["linux/arm/v7", AMD64, pl("linux", "arm", "v7"), "linux/arm/v7", "linux/arm/v7"],
  ["linux/arm/7", AMD64, pl("linux", "arm", "v7"), "linux/arm/v7", "linux/arm/v7"],
  ["linux/arm/v6", AMD64, pl("linux", "arm", "v6"), "linux/arm/v6", "linux/arm/v6"],
  ["linux/arm/6", AMD64, pl("linux", "arm", "v6"), "linux/arm/v6", "linux/arm/v6"],
  ["linux/arm/5", AMD64, pl("linux", "arm", "v5"), "linux/arm/v5", "linux/arm/v5"],
  ["linux/arm/8", AMD64, pl("linux", "arm", "v8"), "linux/arm/v8", "linux/arm/v8"],
  ["linux/arm/v4", AMD64, pl("linux", "arm", "v4"), "linux/arm/v4", "linux/arm/v4"],
  ["linux/armhf", AMD64, pl("linux", "arm"), "linux/arm", "linux/arm/v7"],
  ["linux/armel", AMD64, pl("linux", "arm", "v6"), "linux/arm/v6", "linux/arm/v6"],
  ["linux/armhf/v6", AMD64, pl("linux", "arm", "v7"), "linux/arm/v7", "linux/arm/v7"],
  ["linux/amd64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["linux/amd64/v1", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["linux/amd64/v2", AMD64, pl("linux", "amd64", "v2"), "linux/amd64/v2", "linux/amd64/v2"],
  ["linux/amd64/v3", AMD64, pl("linux", "amd64", "v3"), "linux/amd64/v3", "linux/amd64/v3"],
  ["linux/amd64/v4", AMD64, pl("linux", "amd64", "v4"), "linux/amd64/v4", "linux/amd64/v4"],
  ["linux/x86_64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["linux/x86-64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["Linux/x86_64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["LINUX/AMD64/V2", AMD64, pl("linux", "amd64", "v2"), "linux/amd64/v2", "linux/amd64/v2"],
  ["linux/i386", AMD64, pl("linux", "386"), "linux/386", "linux/386"],
  ["linux/i386/v5", AMD64, pl("linux", "386"), "linux/386", "linux/386"],
  ["linux/386", AMD64, pl("linux", "386"), "linux/386", "linux/386"],
  ["linux/s390x", AMD64, pl("linux", "s390x"), "linux/s390x", "linux/s390x"],
  ["linux/ppc64le", AMD64, pl("linux", "ppc64le"), "linux/ppc64le", "linux/ppc64le"],
  ["linux/riscv64", AMD64, pl("linux", "riscv64"), "linux/riscv64", "linux/riscv64"],
  ["linux/mips64le", AMD64, pl("linux", "mips64le"), "linux/mips64le", "linux/mips64le"],
  ["linux/loong64", AMD64, pl("linux", "loong64"), "linux/loong64", "linux/loong64"],
  // Two components accept unknown names as-is (lower-cased).
  ["plan10/Foo", AMD64, pl("plan10", "foo"), "plan10/foo", "plan10/foo"],
  ["macOS/arm64", AMD64, pl("darwin", "arm64"), "darwin/arm64", "darwin/arm64"],
  ["windows/amd64", AMD64, pl("windows", "amd64"), "windows/amd64", "windows/amd64"],
  // One component: an architecture takes the host OS…
  ["arm", AMD64, pl("linux", "arm"), "linux/arm", "linux/arm/v7"],
  ["armhf", AMD64, pl("linux", "arm"), "linux/arm", "linux/arm/v7"],
  ["armel", AMD64, pl("linux", "arm", "v6"), "linux/arm/v6", "linux/arm/v6"],
  ["Aarch64", AMD64, pl("linux", "arm64"), "linux/arm64", "linux/arm64"],
  ["arm64", DARWIN_ARM64, pl("darwin", "arm64"), "darwin/arm64", "darwin/arm64"],
  ["x86_64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["x86-64", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["i386", AMD64, pl("linux", "386"), "linux/386", "linux/386"],
  ["i386", DARWIN_ARM64, pl("darwin", "386"), "darwin/386", "darwin/386"],
  ["s390x", AMD64, pl("linux", "s390x"), "linux/s390x", "linux/s390x"],
  ["wasm", AMD64, pl("linux", "wasm"), "linux/wasm", "linux/wasm"],
  // …and an OS takes the host architecture (with the host variant only for 32-bit arm, not v7).
  ["linux", AMD64, pl("linux", "amd64"), "linux/amd64", "linux/amd64"],
  ["linux", ARM64, pl("linux", "arm64"), "linux/arm64", "linux/arm64"],
  ["linux", ARM_V6, pl("linux", "arm", "v6"), "linux/arm/v6", "linux/arm/v6"],
  ["linux", ARM_V7, pl("linux", "arm"), "linux/arm", "linux/arm/v7"],
  ["macOS", AMD64, pl("darwin", "amd64"), "darwin/amd64", "darwin/amd64"],
  ["MacOS", ARM64, pl("darwin", "arm64"), "darwin/arm64", "darwin/arm64"],
  ["windows", AMD64, pl("windows", "amd64"), "windows/amd64", "windows/amd64"],
  ["windows()", AMD64, pl("windows", "amd64"), "windows/amd64", "windows/amd64"],
  ["freebsd", AMD64, pl("freebsd", "amd64"), "freebsd/amd64", "freebsd/amd64"],
  // OS version and features.
  [
    "windows(10.0.17763)",
    AMD64,
    pl("windows", "amd64", undefined, { osVersion: "10.0.17763" }),
    "windows/amd64",
    "windows(10.0.17763)/amd64",
  ],
  [
    "windows(10.0.17763+win32k)",
    AMD64,
    pl("windows", "amd64", undefined, { osVersion: "10.0.17763", osFeatures: ["win32k"] }),
    "windows/amd64",
    "windows(10.0.17763+win32k)/amd64",
  ],
  [
    "windows(10.0.20348)/arm64",
    AMD64,
    pl("windows", "arm64", undefined, { osVersion: "10.0.20348" }),
    "windows/arm64",
    "windows(10.0.20348)/arm64",
  ],
  [
    "linux(+gpu)",
    AMD64,
    pl("linux", "amd64", undefined, { osFeatures: ["gpu"] }),
    "linux/amd64",
    "linux(+gpu)/amd64",
  ],
  [
    "linux(+unsorted+erofs)/arm64",
    AMD64,
    pl("linux", "arm64", undefined, { osFeatures: ["unsorted", "erofs"] }),
    "linux/arm64",
    "linux(+erofs+unsorted)/arm64",
  ],
  [
    "windows(10.0.17763%2Bbuild.42+win32k)",
    AMD64,
    pl("windows", "amd64", undefined, { osVersion: "10.0.17763+build.42", osFeatures: ["win32k"] }),
    "windows/amd64",
    "windows(10.0.17763%2Bbuild.42+win32k)/amd64",
  ],
  [
    "windows(50%25done)",
    AMD64,
    pl("windows", "amd64", undefined, { osVersion: "50%done" }),
    "windows/amd64",
    "windows(50%25done)/amd64",
  ],
];

for (const [spec, host, parsed, formatted, normalizedAll] of parseTable) {
  test(`parse ${JSON.stringify(spec)} on ${format(host)}`, () => {
    const p = parse(spec, host);
    assert.deepEqual(p, parsed);
    assert.equal(format(p), formatted);
    assert.equal(formatAll(normalize(p, host)), normalizedAll);
    assert.deepEqual(parseNormalized(spec, host), normalize(p, host));
    // Formatting is stable under re-parsing.
    assert.equal(formatAll(parse(formatAll(p), host)), formatAll(p));
  });
}

test("Parse and Normalize disagree on arm and arm64 variants, as in containerd", () => {
  assert.equal(parse("linux/arm", AMD64).variant, undefined);
  assert.equal(parseNormalized("linux/arm", AMD64).variant, "v7");
  assert.equal(parse("linux/arm64/v8", AMD64).variant, "v8");
  assert.equal(parseNormalized("linux/arm64/v8", AMD64).variant, undefined);
});

// [input platform, normalized]
const normalizeTable: [Platform, Platform][] = [
  [pl("Linux", "X86_64"), pl("linux", "amd64")],
  [pl("linux", "amd64", "V1"), pl("linux", "amd64")],
  [pl("linux", "amd64", "v3"), pl("linux", "amd64", "v3")],
  [pl("linux", "i386", "v7"), pl("linux", "386")],
  [pl("linux", "aarch64"), pl("linux", "arm64")],
  [pl("linux", "aarch64", "8"), pl("linux", "arm64")],
  [pl("linux", "arm64", "v8.0"), pl("linux", "arm64")],
  [pl("linux", "arm64", "9"), pl("linux", "arm64", "v9")],
  [pl("linux", "arm64", "v8.1"), pl("linux", "arm64", "v8.1")],
  [pl("linux", "armhf"), pl("linux", "arm", "v7")],
  [pl("linux", "armel", "v7"), pl("linux", "arm", "v6")],
  [pl("linux", "arm"), pl("linux", "arm", "v7")],
  [pl("linux", "arm", "7"), pl("linux", "arm", "v7")],
  [pl("linux", "arm", "5"), pl("linux", "arm", "v5")],
  [pl("linux", "arm", "v4"), pl("linux", "arm", "v4")],
  [pl("macos", "arm64"), pl("darwin", "arm64")],
  [pl("", "amd64"), pl("linux", "amd64")],
  [pl("linux", "RISCV64"), pl("linux", "riscv64")],
  [
    pl("linux", "amd64", undefined, { osFeatures: ["b", "a", "b"] }),
    pl("linux", "amd64", undefined, { osFeatures: ["a", "b"] }),
  ],
];

for (const [input, expected] of normalizeTable) {
  test(`normalize ${JSON.stringify(input)}`, () => {
    assert.deepEqual(normalize(input, AMD64), expected);
  });
}

const formatAllTable: [Platform, string][] = [
  [
    pl("windows", "amd64", undefined, { osVersion: "10.0.17763+build.42" }),
    "windows(10.0.17763%2Bbuild.42)/amd64",
  ],
  [pl("windows", "amd64", undefined, { osVersion: "50%done" }), "windows(50%25done)/amd64"],
  [pl("windows", "amd64", undefined, { osVersion: "1.0(beta)" }), "windows(1.0%28beta%29)/amd64"],
  [pl("windows", "amd64", undefined, { osVersion: "a/b" }), "windows(a%2Fb)/amd64"],
  [pl("linux", "amd64", undefined, { osFeatures: ["feat+v2"] }), "linux(+feat%2Bv2)/amd64"],
  [pl("linux", "amd64", undefined, { osFeatures: ["100%gpu"] }), "linux(+100%25gpu)/amd64"],
  [
    pl("windows", "amd64", undefined, { osVersion: "10.0+build", osFeatures: ["feat+1"] }),
    "windows(10.0%2Bbuild+feat%2B1)/amd64",
  ],
  [
    pl("linux", "amd64", undefined, { osFeatures: ["", "gpu", "", "simd", "gpu"] }),
    "linux(+gpu+simd)/amd64",
  ],
  [pl("linux", "arm", "v7", { osFeatures: ["b", "a"] }), "linux(+a+b)/arm/v7"],
  [pl("", "amd64"), "unknown"],
];

for (const [p, expected] of formatAllTable) {
  test(`formatAll ${expected}`, () => {
    assert.equal(formatAll(p), expected);
    if (p.os === "") return;
    const back = parse(expected, AMD64);
    assert.equal(back.osVersion, p.osVersion);
    assert.deepEqual(
      back.osFeatures,
      p.osFeatures === undefined
        ? undefined
        : [...new Set(p.osFeatures.filter((f) => f !== ""))].sort(),
    );
  });
}

test("format drops OS version and features; unknown for an empty OS", () => {
  assert.equal(
    format(pl("windows", "amd64", undefined, { osVersion: "10.0.1", osFeatures: ["x"] })),
    "windows/amd64",
  );
  assert.equal(format(pl("", "arm64")), "unknown");
  assert.equal(format(pl("linux", "")), "linux");
});

// [specifier, fragment expected in the message]
const invalidTable: [string, string][] = [
  ["", "not a valid OS component"],
  ["*", "wildcards"],
  ["linux/*", "wildcards"],
  ["*/arm64", "wildcards"],
  ["/linux/arm", "not a valid OS component"],
  ["linux/arm/", "not a valid component"],
  ["linux//arm", "not a valid component"],
  ["linux /arm", "not a valid OS component"],
  ["linux/&arm", "not a valid component"],
  ["linux/arm 64", "not a valid component"],
  ["linux/arm/foo/bar", "too many components"],
  ["linux/arm/foo/bar/baz", "not a valid component"],
  ["foo", "unknown operating system or architecture"],
  ["armv7", "unknown operating system or architecture"],
  ["amd64(1.0)", "unknown operating system or architecture"],
  ["windows(10.0", "not a valid OS component"],
  ["linux(++)", "not a valid OS component"],
  ["windows(50%zzdone)", "percent-escape"],
  ["linux(+a%2)/amd64", "percent-escape"],
];

for (const [spec, fragment] of invalidTable) {
  test(`parse rejects ${JSON.stringify(spec)}`, () => {
    assert.throws(
      () => parse(spec, AMD64),
      (e: unknown) =>
        e instanceof KilnError &&
        e.code === "E_PLATFORM" &&
        e.message.includes(JSON.stringify(spec)) &&
        e.message.includes(fragment) &&
        e.hint !== undefined,
    );
  });
}

test("equal compares normalized forms", () => {
  assert.ok(equal(pl("linux", "arm64"), pl("linux", "aarch64", "v8")));
  assert.ok(equal(pl("linux", "arm"), pl("linux", "armhf")));
  assert.ok(equal(pl("linux", "amd64", "v1"), pl("Linux", "x86_64")));
  assert.ok(
    equal(
      pl("linux", "amd64", undefined, { osFeatures: ["a", "b"] }),
      pl("linux", "amd64", undefined, { osFeatures: ["b", "a"] }),
    ),
  );
  assert.ok(!equal(pl("linux", "arm", "v6"), pl("linux", "arm")));
  assert.ok(!equal(pl("linux", "amd64", "v2"), pl("linux", "amd64")));
  assert.ok(
    !equal(pl("windows", "amd64", undefined, { osVersion: "10.0.1.0" }), pl("windows", "amd64")),
  );
  assert.ok(!equal(pl("linux", "amd64", undefined, { osFeatures: ["gpu"] }), pl("linux", "amd64")));
});

test("parse without a host argument uses the real host for lone names", () => {
  const p = parse("linux");
  assert.equal(p.os, "linux");
  assert.ok(p.architecture.length > 0);
});
