import { test } from "node:test";
import assert from "node:assert/strict";
import {
  all,
  any,
  formatAll,
  newMatcher,
  only,
  onlyOS,
  onlyStrict,
  ordered,
  parse,
  platformVector,
  type MatchComparer,
  type Platform,
} from "../../../src/platform/index.js";

const HOST: Platform = { os: "linux", architecture: "amd64" };
const p = (s: string): Platform => parse(s, HOST);

// [target, Only() vector in preference order (normalized, formatted)]
const vectorTable: [string, string[]][] = [
  ["linux/amd64", ["linux/amd64", "linux/386"]],
  ["linux/amd64/v1", ["linux/amd64", "linux/386"]],
  ["linux/amd64/v2", ["linux/amd64/v2", "linux/amd64", "linux/386"]],
  ["linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]],
  [
    "linux/amd64/v4",
    ["linux/amd64/v4", "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"],
  ],
  ["linux/arm64", ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]],
  [
    "linux/arm64/v8",
    ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
  ],
  [
    "linux/arm64/v8.2",
    [
      "linux/arm64/v8.2",
      "linux/arm64/v8.1",
      "linux/arm64",
      "linux/arm/v8",
      "linux/arm/v7",
      "linux/arm/v6",
      "linux/arm/v5",
    ],
  ],
  [
    "linux/arm64/v9",
    [
      "linux/arm64/v9",
      "linux/arm64/v8.5",
      "linux/arm64/v8.4",
      "linux/arm64/v8.3",
      "linux/arm64/v8.2",
      "linux/arm64/v8.1",
      "linux/arm64",
      "linux/arm/v8",
      "linux/arm/v7",
      "linux/arm/v6",
      "linux/arm/v5",
    ],
  ],
  [
    "linux/arm64/v9.3",
    [
      "linux/arm64/v9.3",
      "linux/arm64/v9.2",
      "linux/arm64/v9.1",
      "linux/arm64/v9",
      ...[8, 7, 6, 5, 4, 3, 2, 1].map((m) => `linux/arm64/v8.${m}`),
      "linux/arm64",
      "linux/arm/v8",
      "linux/arm/v7",
      "linux/arm/v6",
      "linux/arm/v5",
    ],
  ],
  ["linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]],
  ["linux/arm", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]],
  ["linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]],
  ["linux/arm/v5", ["linux/arm/v5"]],
  ["linux/arm/v4", ["linux/arm/v4"]],
  ["linux/386", ["linux/386"]],
  ["linux/ppc64le", ["linux/ppc64le"]],
  ["linux/s390x", ["linux/s390x"]],
  ["linux/riscv64", ["linux/riscv64"]],
  ["linux/mips64le", ["linux/mips64le"]],
  ["linux/loong64", ["linux/loong64"]],
  // containerd quirk: an arm64 variant outside its table has an empty vector.
  ["linux/arm64/v10", []],
  ["linux(+gpu)/amd64", ["linux(+gpu)/amd64", "linux(+gpu)/386"]],
];

for (const [target, expected] of vectorTable) {
  test(`platformVector ${target}`, () => {
    assert.deepEqual(platformVector(p(target)).map(formatAll), expected);
  });
}

// [target, matches, does not match] — containerd's TestOnly vectors.
const onlyTable: [string, string[], string[]][] = [
  [
    "linux/amd64",
    ["linux/amd64", "linux/386"],
    ["linux/amd64/v2", "linux/arm/v7", "linux/arm64", "windows/amd64", "windows/arm"],
  ],
  [
    "linux/amd64/v2",
    ["linux/amd64", "linux/amd64/v1", "linux/amd64/v2", "linux/386"],
    ["linux/amd64/v3", "linux/amd64/v4", "linux/arm/v7", "linux/arm64", "windows/amd64"],
  ],
  ["linux/386", ["linux/386"], ["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64"]],
  [
    "windows/amd64",
    ["windows/amd64", "windows(10.0.17763)/amd64"],
    ["linux/amd64", "linux/arm64", "windows/arm"],
  ],
  [
    "linux/arm/v8",
    ["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
    ["linux/amd64", "linux/arm/v4", "linux/arm64", "windows/arm"],
  ],
  [
    "linux/arm/v7",
    ["linux/arm", "linux/armhf", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
    ["linux/arm/v4", "linux/arm/v8", "linux/arm64", "windows/arm"],
  ],
  [
    "linux/arm/v6",
    ["linux/arm/v5", "linux/arm/v6", "linux/armel"],
    ["linux/arm", "linux/arm/v4", "linux/arm/v7"],
  ],
  ["linux/arm/v5", ["linux/arm/v5"], ["linux/arm", "linux/arm/v4", "linux/arm/v6"]],
  ["linux/arm/v4", ["linux/arm/v4"], ["linux/arm", "linux/arm/v5"]],
  [
    "linux/arm64/v9.6",
    [
      "linux/arm",
      "linux/arm/v5",
      "linux/arm/v8",
      "linux/arm64",
      "linux/arm64/v8",
      "linux/arm64/v8.1",
      "linux/arm64/v8.9",
      "linux/arm64/v9",
      "linux/arm64/v9.0",
      "linux/arm64/v9.5",
      "linux/arm64/v9.6",
    ],
    ["linux/amd64", "linux/arm/v4", "windows/arm", "linux/arm64/v8.10", "linux/arm64/v9.7"],
  ],
  [
    "linux/arm64/v9",
    [
      "linux/arm",
      "linux/arm/v8",
      "linux/arm64",
      "linux/arm64/v8",
      "linux/arm64/v8.5",
      "linux/arm64/v9",
      "linux/arm64/v9.0",
    ],
    ["linux/amd64", "linux/arm/v4", "linux/arm64/v8.6", "linux/arm64/v9.1"],
  ],
  [
    "linux/arm64/v8.1",
    ["linux/arm", "linux/arm/v8", "linux/arm64", "linux/arm64/v8", "linux/arm64/v8.1"],
    ["linux/arm/v4", "linux/arm/v9", "linux/arm64/v8.2", "linux/arm64/v9"],
  ],
  [
    "linux/arm64",
    [
      "linux/arm",
      "linux/arm/v5",
      "linux/arm/v6",
      "linux/arm/v7",
      "linux/arm/v8",
      "linux/arm64",
      "linux/arm64/v8",
      "linux/aarch64",
    ],
    [
      "linux/amd64",
      "linux/arm/v4",
      "linux/arm/v9",
      "linux/arm64/v8.1",
      "linux/arm64/v9",
      "windows/arm64",
    ],
  ],
  ["linux/arm64/v10", [], ["linux/arm64", "linux/arm64/v10", "linux/arm/v7"]],
];

function checkMatches(name: string, mc: MatchComparer, yes: string[], no: string[]): void {
  for (const s of yes) assert.ok(mc.match(p(s)), `${name} should match ${s}`);
  for (const s of no) assert.ok(!mc.match(p(s)), `${name} should not match ${s}`);
}

for (const [target, yes, no] of onlyTable) {
  test(`only(${target})`, () => {
    checkMatches(`only(${target})`, only(p(target)), yes, no);
  });
}

// containerd's TestOnlyStrict vectors.
const onlyStrictTable: [string, string[], string[]][] = [
  [
    "linux/amd64",
    ["linux/amd64", "linux/x86_64", "linux/amd64/v1"],
    ["linux/386", "linux/amd64/v2", "linux/arm64", "windows/amd64"],
  ],
  ["linux/386", ["linux/386", "linux/i386"], ["linux/amd64"]],
  ["windows/amd64", ["windows/amd64", "windows(10.0.17763)/amd64"], ["linux/amd64", "windows/arm"]],
  [
    "windows(10.0.17763)/amd64",
    ["windows/amd64", "windows(10.0.17763)/amd64"],
    ["linux/amd64", "windows/arm"],
  ],
  [
    "linux/arm/v8",
    ["linux/arm/v8"],
    ["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64"],
  ],
  [
    "linux/arm/v7",
    ["linux/arm", "linux/arm/v7", "linux/armhf"],
    ["linux/arm/v5", "linux/arm/v6", "linux/arm/v8"],
  ],
  ["linux/arm/v6", ["linux/arm/v6", "linux/armel"], ["linux/arm/v5", "linux/arm", "linux/arm/v7"]],
  [
    "linux/arm64/v9.5",
    ["linux/arm64/v9.5"],
    [
      "linux/arm",
      "linux/arm/v8",
      "linux/arm64/v8",
      "linux/arm64/v8.1",
      "linux/arm64/v9",
      "linux/arm64/v9.4",
    ],
  ],
  [
    "linux/arm64/v9",
    ["linux/arm64/v9", "linux/arm64/v9.0"],
    ["linux/arm/v8", "linux/arm64/v8", "linux/arm64/v8.1"],
  ],
  ["linux/arm64/v8.1", ["linux/arm64/v8.1"], ["linux/arm64/v8", "linux/arm64/v9", "linux/arm/v8"]],
  [
    "linux/arm64",
    ["linux/arm64", "linux/arm64/v8", "linux/aarch64", "linux/aarch64/v8"],
    ["linux/arm", "linux/arm/v8", "linux/arm64/v9"],
  ],
];

for (const [target, yes, no] of onlyStrictTable) {
  test(`onlyStrict(${target})`, () => {
    checkMatches(`onlyStrict(${target})`, onlyStrict(p(target)), yes, no);
  });
}

const onlyOSTable: [string, string[], string[]][] = [
  [
    "linux/amd64",
    ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386"],
    ["windows/amd64", "darwin/arm64"],
  ],
  [
    "windows(10.0.17763)/amd64",
    ["windows/amd64", "windows/arm64", "windows(10.0.17763)/amd64", "windows(10.0.17763)/arm64"],
    ["linux/amd64", "windows(10.0.20348)/amd64"],
  ],
  [
    "linux(+gpu)/amd64",
    ["linux/arm64", "linux(+gpu)/amd64"],
    ["windows/amd64", "linux(+gpu+simd)/amd64"],
  ],
];

for (const [target, yes, no] of onlyOSTable) {
  test(`onlyOS(${target})`, () => {
    checkMatches(`onlyOS(${target})`, onlyOS(p(target)), yes, no);
  });
}

function sorted(mc: MatchComparer, specs: string[]): string[] {
  return specs
    .map(p)
    .sort((a, b) => (mc.less(a, b) ? -1 : mc.less(b, a) ? 1 : 0))
    .map(formatAll);
}

// containerd's TestCompareOSFeatures: [target, candidates, order under only/onlyStrict/ordered/any]
const featureOrderTable: [string, string[], string[]][] = [
  [
    "linux/amd64",
    ["windows/amd64", "linux/amd64", "linux(+other)/amd64", "linux/arm64"],
    ["linux/amd64", "linux(+other)/amd64", "windows/amd64", "linux/arm64"],
  ],
  [
    "linux(+none)/amd64",
    ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
    ["linux/amd64", "linux(+other)/amd64", "windows/amd64", "linux/arm64"],
  ],
  [
    "linux(+other)/amd64",
    ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
    ["linux(+other)/amd64", "linux/amd64", "windows/amd64", "linux/arm64"],
  ],
  [
    "linux(+af+other+zf)/amd64",
    ["windows/amd64", "linux/amd64", "linux/arm64", "linux(+other)/amd64"],
    ["linux(+other)/amd64", "linux/amd64", "windows/amd64", "linux/arm64"],
  ],
  [
    "linux(+f1+f2)/amd64",
    ["linux/amd64", "linux(+f2)/amd64", "linux(+f1)/amd64", "linux(+f1+f2)/amd64"],
    ["linux(+f1+f2)/amd64", "linux(+f2)/amd64", "linux(+f1)/amd64", "linux/amd64"],
  ],
  [
    "linux(7.2+other)/amd64",
    ["linux/amd64", "linux(+other)/amd64", "linux(7.1)/amd64", "linux(7.2+other)/amd64"],
    ["linux(+other)/amd64", "linux(7.2+other)/amd64", "linux/amd64", "linux(7.1)/amd64"],
  ],
];

for (const [target, candidates, expected] of featureOrderTable) {
  test(`OS feature preference for ${target}`, () => {
    const t = p(target);
    for (const [name, mc] of [
      ["only", only(t)],
      ["onlyStrict", onlyStrict(t)],
      ["ordered", ordered(t)],
      ["any", any(t)],
    ] as const) {
      assert.deepEqual(sorted(mc, candidates), expected, name);
    }
  });
}

test("only ranks the closest compatible platform first", () => {
  const candidates = [
    "linux/arm/v5",
    "linux/386",
    "linux/arm/v7",
    "linux/arm64",
    "linux/amd64",
    "linux/arm64/v8.2",
  ];
  assert.deepEqual(sorted(only(p("linux/arm64/v8.2")), candidates), [
    "linux/arm64/v8.2",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v5",
    "linux/386",
    "linux/amd64",
  ]);
  assert.deepEqual(
    sorted(only(p("linux/amd64/v3")), [
      "linux/386",
      "linux/amd64",
      "linux/amd64/v3",
      "linux/arm64",
    ]),
    ["linux/amd64/v3", "linux/amd64", "linux/386", "linux/arm64"],
  );
});

test("onlyOS ranks the exact architecture first and other OSes last", () => {
  assert.deepEqual(
    sorted(onlyOS(p("linux/amd64")), ["linux/arm64", "linux/386", "linux/amd64", "windows/amd64"]),
    ["linux/amd64", "linux/arm64", "linux/386", "windows/amd64"],
  );
  assert.deepEqual(
    sorted(onlyOS(p("linux/amd64")), [
      "windows/amd64",
      "darwin/amd64",
      "linux/arm64",
      "linux/amd64",
    ]),
    ["linux/amd64", "linux/arm64", "windows/amd64", "darwin/amd64"],
  );
});

test("ordered prefers earlier platforms; any has no preference", () => {
  const o = ordered(p("linux/arm64"), p("linux/amd64"));
  assert.ok(o.less(p("linux/arm64"), p("linux/amd64")));
  assert.ok(!o.less(p("linux/amd64"), p("linux/arm64")));
  assert.ok(o.less(p("linux/amd64"), p("linux/s390x")));
  assert.ok(!o.match(p("linux/s390x")));
  const a = any(p("linux/arm64"), p("linux/amd64"));
  assert.ok(!a.less(p("linux/arm64"), p("linux/amd64")));
  assert.ok(!a.less(p("linux/amd64"), p("linux/arm64")));
  assert.ok(a.less(p("linux/amd64"), p("linux/s390x")));
  assert.ok(a.match(p("linux/arm64")) && a.match(p("linux/amd64")) && !a.match(p("linux/386")));
});

test("all matches everything and prefers nothing", () => {
  assert.ok(all.match(p("plan9/mips")));
  assert.ok(!all.less(p("linux/amd64"), p("linux/arm64")));
});

test("newMatcher requires candidate features to be a subset", () => {
  const m = newMatcher(p("linux(+gpu+simd)/amd64"));
  assert.ok(m.match(p("linux/amd64")));
  assert.ok(m.match(p("linux(+simd)/amd64")));
  assert.ok(m.match(p("linux(+simd+gpu)/amd64")));
  assert.ok(!m.match(p("linux(+gpu+avx)/amd64")));
  assert.ok(!newMatcher(p("linux/amd64")).match(p("linux(+gpu)/amd64")));
});

test("windows matchers ignore a candidate's win32k feature", () => {
  assert.ok(newMatcher(p("windows/amd64")).match(p("windows(+win32k)/amd64")));
  assert.ok(
    newMatcher(p("windows(10.0.17763)/amd64")).match(p("windows(10.0.17763+win32k)/amd64")),
  );
  assert.ok(!newMatcher(p("linux/amd64")).match(p("linux(+win32k)/amd64")));
  assert.ok(!newMatcher(p("windows/amd64")).match(p("windows(+win32k+gpu)/amd64")));
});

// [matcher (host) OS version, candidate OS version, match]
const windowsVersionTable: [string, string, boolean][] = [
  ["", "10.0.17763", true],
  ["10.0.17763", "", true],
  ["10.0.17763", "10.0.17763", true],
  ["10.0.17763", "10.0.17763.1234", true],
  ["10.0.17763", "10.0.17764", false],
  ["10.0.17763", "10.0.14393", false],
  ["10.0.20348", "10.0.20348", true],
  ["10.0.20348", "10.0.17763", false],
  ["10.0.20348", "10.0.20349", false],
  ["10.0.22621", "10.0.20348", true], // Windows 11 host runs ltsc2022 containers
  ["10.0.22621", "10.0.22000", true],
  ["10.0.22621", "10.0.17763", false],
  ["10.0.22621", "10.0.25398", false],
  ["10.0.26100", "10.0.20348", true], // ltsc2025 host runs ltsc2022…
  ["10.0.26100", "10.0.26100", true],
  ["10.0.26200", "10.0.26100", true], // …and newer hosts run from ltsc2025 on
  ["10.0.26200", "10.0.20348", false],
  ["10.1.20348", "10.0.20348", false],
  ["6.3.9600", "10.0.9600", false],
  ["10.0", "10.0.99999", true], // unparseable matcher version matches anything
  ["10.0.17763", "garbage", false],
];

for (const [hostVersion, ctrVersion, expected] of windowsVersionTable) {
  test(`windows host ${hostVersion || "(any)"} ${expected ? "runs" : "does not run"} ${ctrVersion || "(any)"}`, () => {
    const host: Platform = { os: "windows", architecture: "amd64" };
    if (hostVersion !== "") host.osVersion = hostVersion;
    const ctr: Platform = { os: "windows", architecture: "amd64" };
    if (ctrVersion !== "") ctr.osVersion = ctrVersion;
    assert.equal(newMatcher(host).match(ctr), expected);
    assert.equal(only(host).match(ctr), expected);
  });
}
