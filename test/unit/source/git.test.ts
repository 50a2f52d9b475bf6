import { test } from "node:test";
import assert from "node:assert/strict";
import { isKilnError } from "../../../src/errors.js";
import {
  gitAuthHeader,
  matchRemoteRef,
  parseGitRef,
  redactUrl,
} from "../../../src/source/index.js";

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
  assert.deepEqual(parseGitRef("github.com/org/repo"), {
    remote: "https://github.com/org/repo",
    ref: "",
    subdir: "",
    indistinguishableFromLocal: true,
  });
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
  // the scp-like form takes the query too; flag keys need no value
  assert.deepEqual(parseGitRef("git@h:o/r.git?tag=v1&keep-git-dir&submodules=0#:d"), {
    remote: "git@h:o/r.git",
    ref: "refs/tags/v1",
    subdir: "d",
    keepGitDir: true,
    submodules: false,
  });
  assert.deepEqual(parseGitRef("ssh://git@h/r.git?fetch-by-commit=1&commit=abc&mtime=commit"), {
    remote: "ssh://git@h/r.git",
    ref: "",
    subdir: "",
    checksum: "abc",
    fetchByCommit: true,
  });
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
    ["git://h/r?ref=", /query "ref" has no value/],
    ["git://h/r?mtime=now", /invalid mtime value "now"/],
    ["git://h/r?submodules=x", /invalid submodules value/],
  ] as const) {
    assert.throws(
      () => parseGitRef(s),
      (e: unknown) => isKilnError(e) && e.code === "E_GIT_REF" && why.test(e.message),
      s,
    );
  }
});

test("parseGitRef: not git either — an scp-like form needs a user, dots in it do not count", () => {
  for (const s of ["host:path", "first.last@h:r", "ftp://h/r.git"])
    assert.equal(parseGitRef(s), undefined, s);
});

test("redactUrl: a password in a URL never reaches a message", () => {
  assert.equal(redactUrl("https://u:tok3n@h/r.git"), "https://u:xxxxx@h/r.git");
  assert.equal(redactUrl("https://u@h/r.git"), "https://u@h/r.git");
  assert.equal(redactUrl("git@h:r.git"), "git@h:r.git");
});

test("matchRemoteRef: BuildKit's choice among ls-remote lines", () => {
  const A = "a".repeat(40);
  const B = "b".repeat(40);
  const C = "c".repeat(40);
  const listing = [
    `${A}\trefs/heads/v1`,
    `${B}\trefs/tags/v1`,
    `${C}\trefs/tags/v1^{}`,
    `${B}\trefs/tags/rel`,
    `${C}\trefs/tags/rel^{}`,
    `${A}\trefs/heads/feature/main`,
  ].join("\n");
  // a name that is both a branch and a tag is the branch
  assert.deepEqual(matchRemoteRef(listing, "v1"), { commit: A, fullRef: "refs/heads/v1" });
  // an annotated tag resolves to its commit and keeps its own object
  assert.deepEqual(matchRemoteRef(listing, "rel"), {
    commit: C,
    fullRef: "refs/tags/rel",
    tagObject: B,
  });
  assert.deepEqual(matchRemoteRef(listing, "refs/tags/v1"), {
    commit: C,
    fullRef: "refs/tags/v1",
    tagObject: B,
  });
  // ls-remote's tail match is not a match
  assert.equal(matchRemoteRef(listing, "main"), undefined);
  assert.deepEqual(matchRemoteRef(`${A}\tHEAD`, "HEAD"), { commit: A, fullRef: "HEAD" });
});

test("gitAuthHeader: BuildKit's GIT_AUTH_* secrets, per host first, a token as x-access-token", () => {
  const secrets = (o: Record<string, string>) =>
    new Map(Object.entries(o).map(([k, v]) => [k, Buffer.from(v)]));
  const basic = (t: string) => `basic ${Buffer.from(`x-access-token:${t}`).toString("base64")}`;
  const remote = "https://git.example:8443/r.git";
  assert.equal(gitAuthHeader(remote, secrets({ GIT_AUTH_TOKEN: "t" })), basic("t"));
  assert.equal(
    gitAuthHeader(remote, secrets({ GIT_AUTH_TOKEN: "t", "GIT_AUTH_TOKEN.git.example:8443": "h" })),
    basic("h"),
  );
  assert.equal(
    gitAuthHeader(remote, secrets({ GIT_AUTH_TOKEN: "t", GIT_AUTH_HEADER: "bearer x" })),
    "bearer x",
  );
  assert.equal(gitAuthHeader(remote, secrets({ "GIT_AUTH_TOKEN.other": "o" })), undefined);
  // ssh and git:// remotes get no header
  assert.equal(gitAuthHeader("git@h:r.git", secrets({ GIT_AUTH_TOKEN: "t" })), undefined);
  assert.equal(gitAuthHeader("git://h/r.git", secrets({ GIT_AUTH_TOKEN: "t" })), undefined);
});
