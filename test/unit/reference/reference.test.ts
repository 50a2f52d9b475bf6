import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError } from "../../../src/errors.js";
import {
  familiarName,
  formatReference,
  parseReference,
  registryHost,
  repositoryName,
  withDigest,
  withTag,
  type Reference,
} from "../../../src/reference/index.js";

const SHA = "sha256:" + "f".repeat(64);
const SHA512 = "sha512:" + "a".repeat(128);

function ref(registry: string, repository: string, tag?: string, digest?: string): Reference {
  const r: Reference = { registry, repository };
  if (tag !== undefined) r.tag = tag;
  if (digest !== undefined) r.digest = digest;
  return r;
}

// [input, parsed, full form, familiar form]
const parseTable: [string, Reference, string, string][] = [
  [
    "busybox",
    ref("docker.io", "library/busybox", "latest"),
    "docker.io/library/busybox:latest",
    "busybox:latest",
  ],
  [
    "busybox:1.36",
    ref("docker.io", "library/busybox", "1.36"),
    "docker.io/library/busybox:1.36",
    "busybox:1.36",
  ],
  ["user/app:1", ref("docker.io", "user/app", "1"), "docker.io/user/app:1", "user/app:1"],
  [
    "docker.io/busybox",
    ref("docker.io", "library/busybox", "latest"),
    "docker.io/library/busybox:latest",
    "busybox:latest",
  ],
  [
    "docker.io/library/busybox:latest",
    ref("docker.io", "library/busybox", "latest"),
    "docker.io/library/busybox:latest",
    "busybox:latest",
  ],
  [
    "index.docker.io/user/app",
    ref("docker.io", "user/app", "latest"),
    "docker.io/user/app:latest",
    "user/app:latest",
  ],
  [
    "index.docker.io/alpine",
    ref("docker.io", "library/alpine", "latest"),
    "docker.io/library/alpine:latest",
    "alpine:latest",
  ],
  [
    "library/a/b",
    ref("docker.io", "library/a/b", "latest"),
    "docker.io/library/a/b:latest",
    "library/a/b:latest", // three components keep their "library/"
  ],
  [
    "localhost/app",
    ref("localhost", "app", "latest"),
    "localhost/app:latest",
    "localhost/app:latest",
  ],
  [
    "localhost:5000/a/b:t",
    ref("localhost:5000", "a/b", "t"),
    "localhost:5000/a/b:t",
    "localhost:5000/a/b:t",
  ],
  [
    "host/x@" + SHA,
    ref("docker.io", "host/x", undefined, SHA),
    "docker.io/host/x@" + SHA,
    "host/x@" + SHA,
  ],
  ["host.io/x@" + SHA, ref("host.io", "x", undefined, SHA), "host.io/x@" + SHA, "host.io/x@" + SHA],
  [
    "alpine@" + SHA,
    ref("docker.io", "library/alpine", undefined, SHA),
    "docker.io/library/alpine@" + SHA,
    "alpine@" + SHA,
  ],
  [
    "name:tag@" + SHA,
    ref("docker.io", "library/name", "tag", SHA),
    "docker.io/library/name:tag@" + SHA,
    "name:tag@" + SHA,
  ],
  [
    "ghcr.io/org/app:v1.2.3",
    ref("ghcr.io", "org/app", "v1.2.3"),
    "ghcr.io/org/app:v1.2.3",
    "ghcr.io/org/app:v1.2.3",
  ],
  [
    "test:5000/repo",
    ref("test:5000", "repo", "latest"),
    "test:5000/repo:latest",
    "test:5000/repo:latest",
  ],
  [
    "test.com:5000",
    ref("docker.io", "library/test.com", "5000"),
    "docker.io/library/test.com:5000",
    "test.com:5000",
  ],
  [
    "test_com",
    ref("docker.io", "library/test_com", "latest"),
    "docker.io/library/test_com:latest",
    "test_com:latest",
  ],
  [
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    ref("sub-dom1.foo.com", "bar/baz/quux", "some-long-tag"),
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
  ],
  [
    "b.gcr.io/test.example.com/my-app:test.example.com",
    ref("b.gcr.io", "test.example.com/my-app", "test.example.com"),
    "b.gcr.io/test.example.com/my-app:test.example.com",
    "b.gcr.io/test.example.com/my-app:test.example.com",
  ],
  [
    "192.168.1.1:5000/repo:5050",
    ref("192.168.1.1:5000", "repo", "5050"),
    "192.168.1.1:5000/repo:5050",
    "192.168.1.1:5000/repo:5050",
  ],
  [
    "[::1]:5000/repo",
    ref("[::1]:5000", "repo", "latest"),
    "[::1]:5000/repo:latest",
    "[::1]:5000/repo:latest",
  ],
  [
    "[2001:db8::1]:5000/repo:tag@" + SHA,
    ref("[2001:db8::1]:5000", "repo", "tag", SHA),
    "[2001:db8::1]:5000/repo:tag@" + SHA,
    "[2001:db8::1]:5000/repo:tag@" + SHA,
  ],
  [
    "lowercase:Uppercase",
    ref("docker.io", "library/lowercase", "Uppercase"),
    "docker.io/library/lowercase:Uppercase",
    "lowercase:Uppercase",
  ],
  [
    "a__b/c-d.e---f:_t",
    ref("docker.io", "a__b/c-d.e---f", "_t"),
    "docker.io/a__b/c-d.e---f:_t",
    "a__b/c-d.e---f:_t",
  ],
  // An upper-case first component counts as a registry host (a known distribution quirk).
  ["Registry/app", ref("Registry", "app", "latest"), "Registry/app:latest", "Registry/app:latest"],
  [
    "quay.io/x/y@" + SHA512,
    ref("quay.io", "x/y", undefined, SHA512),
    "quay.io/x/y@" + SHA512,
    "quay.io/x/y@" + SHA512,
  ],
  [
    "example.com/" + "a".repeat(255) + ":tag",
    ref("example.com", "a".repeat(255), "tag"),
    "example.com/" + "a".repeat(255) + ":tag",
    "example.com/" + "a".repeat(255) + ":tag",
  ],
  [
    "a:" + "t".repeat(128),
    ref("docker.io", "library/a", "t".repeat(128)),
    "docker.io/library/a:" + "t".repeat(128),
    "a:" + "t".repeat(128),
  ],
];

for (const [input, expected, full, familiar] of parseTable) {
  test(`parseReference ${JSON.stringify(input.length > 80 ? input.slice(0, 80) + "…" : input)}`, () => {
    const r = parseReference(input);
    assert.deepEqual(r, expected);
    assert.equal(formatReference(r), full);
    assert.equal(familiarName(r), familiar);
    // Both printed forms parse back to the same reference.
    assert.deepEqual(parseReference(full), r);
    assert.deepEqual(parseReference(familiar), r);
  });
}

// [input, fragment of the message]
const invalidTable: [string, string][] = [
  ["", "empty"],
  [":justtag", "repository name is missing"],
  ["@" + SHA, "repository name is missing"],
  ["f".repeat(64), "image ID"],
  ["Uppercase:tag", "must be lower-case"],
  ["UPPER", "must be lower-case"],
  ["test:5000/Uppercase/lowercase:tag", "must be lower-case"],
  ["user/App", "must be lower-case"],
  ["aa/asdf$$^/aa", "repository names are lower-case"],
  ["a b", "repository names are lower-case"],
  ["repo/", "repository names are lower-case"],
  ["-repo", "repository names are lower-case"],
  ["repo:-tag", 'tag "-tag"'],
  ["repo:.tag", 'tag ".tag"'],
  ["repo:" + "t".repeat(129), "tag"],
  ["repo:t@g", "not of the form algorithm:hex"],
  ["repo@sha256:" + "f".repeat(34), "64 hex characters"],
  ["repo@sha256:" + "F".repeat(64), "lower-case hex"],
  ["validname@invaliddigest:" + "f".repeat(64), 'unsupported digest algorithm "invaliddigest"'],
  ["repo@sha256", "not of the form algorithm:hex"],
  ["domain/" + "a".repeat(256) + ":tag", "longer than 255"],
  ["[2001:db8::1]:5000", 'tag "db8::1]:5000"'],
  ["[fe80::1%eth0]:5000/repo", "repository names are lower-case"],
  ["a/".repeat(3000) + "a", "too long"],
];

for (const [input, fragment] of invalidTable) {
  test(`parseReference rejects ${JSON.stringify(input.length > 60 ? input.slice(0, 60) + "…" : input)}`, () => {
    assert.throws(
      () => parseReference(input),
      (e: unknown) =>
        e instanceof KilnError &&
        e.code === "E_REFERENCE" &&
        e.message.includes(fragment) &&
        e.message.includes(JSON.stringify(input).slice(0, 150)) &&
        e.hint !== undefined,
    );
  });
}

test("withTag replaces the tag and keeps the digest", () => {
  const r = parseReference("alpine@" + SHA);
  assert.equal(formatReference(withTag(r, "3.20")), "docker.io/library/alpine:3.20@" + SHA);
  assert.equal(
    formatReference(withTag(parseReference("alpine:3.19"), "3.20")),
    "docker.io/library/alpine:3.20",
  );
  assert.equal(r.tag, undefined, "the input is not modified");
  assert.throws(
    () => withTag(r, "bad tag"),
    (e: unknown) => e instanceof KilnError && e.code === "E_REFERENCE",
  );
  assert.throws(
    () => withTag(r, ""),
    (e: unknown) => e instanceof KilnError && e.code === "E_REFERENCE",
  );
});

test("withDigest pins the reference and keeps the tag", () => {
  const r = parseReference("ghcr.io/org/app:1");
  assert.equal(formatReference(withDigest(r, SHA)), "ghcr.io/org/app:1@" + SHA);
  assert.throws(
    () => withDigest(r, "sha256:abc"),
    (e: unknown) => e instanceof KilnError && e.code === "E_REFERENCE",
  );
  assert.throws(() => withDigest(r, "md5:" + "a".repeat(32)), /unsupported digest algorithm/);
});

test("repositoryName and registryHost", () => {
  assert.equal(repositoryName(parseReference("busybox")), "docker.io/library/busybox");
  assert.equal(repositoryName(parseReference("localhost:5000/a/b:t")), "localhost:5000/a/b");
  assert.equal(registryHost(parseReference("busybox")), "registry-1.docker.io");
  assert.equal(registryHost(parseReference("index.docker.io/user/app")), "registry-1.docker.io");
  assert.equal(registryHost(parseReference("127.0.0.1:5000/app")), "127.0.0.1:5000");
  assert.equal(registryHost(parseReference("ghcr.io/org/app")), "ghcr.io");
});

test("hostile input is rejected quickly", () => {
  // Backtracking-prone shapes must not hang the parser.
  for (const input of [
    "a" + "-".repeat(3000) + "!",
    "a" + "._".repeat(1500) + "A",
    "a/" + "b-".repeat(1500) + "@x",
  ]) {
    assert.throws(
      () => parseReference(input),
      (e: unknown) => e instanceof KilnError && e.code === "E_REFERENCE",
    );
  }
});
