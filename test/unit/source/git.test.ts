import { test } from "node:test";
import assert from "node:assert/strict";
import { isKilnError } from "../../../src/errors.js";
import { parseGitRef } from "../../../src/source/index.js";

test("parseGitRef: BuildKit's git URL forms, fragment and query", () => {
  assert.deepEqual(parseGitRef("git://host/repo.git#v1:sub/dir"), {
    remote: "git://host/repo.git",
    ref: "v1",
    subdir: "sub/dir",
  });
  assert.deepEqual(parseGitRef("https://host/org/repo.git"), {
    remote: "https://host/org/repo.git",
    ref: "",
    subdir: "",
  });
  assert.deepEqual(parseGitRef("git@github.com:org/repo.git#main"), {
    remote: "git@github.com:org/repo.git",
    ref: "main",
    subdir: "",
  });
  assert.equal(parseGitRef("github.com/org/repo")?.remote, "https://github.com/org/repo");
  // subdir is cleaned and cannot climb out of the repository
  assert.equal(parseGitRef("git://h/r#:../../etc")?.subdir, "etc");
  const q = parseGitRef("https://h/r.git?tag=v2&subdir=a&checksum=abc123&keep-git-dir=true");
  assert.deepEqual(q, {
    remote: "https://h/r.git",
    ref: "refs/tags/v2",
    subdir: "a",
    checksum: "abc123",
    keepGitDir: true,
  });
  assert.equal(parseGitRef("git://h/r?branch=dev")?.ref, "refs/heads/dev");
});

test("parseGitRef: not git — local paths, http URLs of files, other schemes", () => {
  for (const s of [
    ".",
    "./ctx",
    "../x",
    "/abs/dir",
    "https://h/ctx.tar",
    "http://h/Dockerfile",
    "docker-image://busybox",
    "oci-layout:///d",
  ])
    assert.equal(parseGitRef(s), undefined, s);
});

test("parseGitRef: bad git URLs are errors that say why", () => {
  for (const [s, why] of [
    ["git://h/r?tag=a&branch=b", /branch conflicts with tag/],
    ["git://h/r?ref=dev#main", /ref conflicts/],
    ["git://h/r?frobnicate=1", /unexpected query "frobnicate"/],
    ["git://h/r?keep-git-dir=maybe", /invalid keep-git-dir/],
  ] as const) {
    assert.throws(
      () => parseGitRef(s),
      (e: unknown) => isKilnError(e) && e.code === "E_GIT_REF" && why.test(e.message),
      s,
    );
  }
});
