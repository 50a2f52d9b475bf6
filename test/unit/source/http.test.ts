// ADD <URL>: the file name derived from the URL (BuildKit's frontend + pathutil.SafeFileName)
// and the graph the converter emits for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { safeFileName, urlFileName } from "../../../src/source/index.js";
import { convert, files, vertices } from "../frontend/convert-helpers.js";

test("urlFileName: the last element of the decoded URL path", () => {
  const cases: [string, string][] = [
    ["https://example.com/foo/bar.tar.gz", "bar.tar.gz"],
    ["https://example.com/foo/bar.tar.gz?x=1#frag", "bar.tar.gz"],
    ["https://example.com/dir/", "dir"],
    ["https://example.com/dir//", "dir"],
    ["https://example.com/a%20b.txt", "a b.txt"],
    ["https://example.com/a%2Fb", "b"],
    ["http://127.0.0.1:8080/x", "x"],
    ["https://example.com", "__unnamed__"],
    ["https://example.com/", "__unnamed__"],
    ["https://example.com/?q=1", "__unnamed__"],
    ["https://example.com/%zz", "__unnamed__"],
    ["https://example.com/a%00b", "download"],
  ];
  for (const [url, want] of cases) assert.equal(urlFileName(url), want, url);
});

test("safeFileName: one path element, never . or .. or control characters", () => {
  assert.equal(safeFileName("  x.txt "), "x.txt");
  assert.equal(safeFileName("a/b"), "b");
  assert.equal(safeFileName(""), "download");
  assert.equal(safeFileName(".."), "download");
  assert.equal(safeFileName("."), "download");
  assert.equal(safeFileName("a\tb"), "download");
  assert.equal(safeFileName("a\u0085b"), "download");
  assert.equal(safeFileName("ünï.txt"), "ünï.txt");
});

test("ADD <URL> emits one http source shared by every platform, copied without unpacking", async () => {
  const src =
    "FROM alpine\nWORKDIR /w\nADD --chmod=755 --chown=1:2 https://x.test/d/tool.tar.gz bin/\n";
  const amd = await convert(src);
  const arm = await convert(src, { platform: "linux/arm64", multiPlatform: true });
  const http = vertices(amd).filter((v) => v.op.kind === "http");
  assert.equal(http.length, 1);
  assert.deepEqual(http[0]!.op, {
    kind: "http",
    url: "https://x.test/d/tool.tar.gz",
    filename: "tool.tar.gz",
  });
  assert.equal(http[0]!.platform, undefined);
  assert.equal(
    vertices(arm).find((v) => v.op.kind === "http")!.digest,
    http[0]!.digest,
    "the download does not depend on the target platform",
  );
  const copy = files(amd).at(-1)!;
  assert.equal(copy.inputs[1]!.digest, http[0]!.digest);
  assert.deepEqual(copy.op.actions[0], {
    action: "copy",
    input: 1,
    src: "/tool.tar.gz",
    dest: "/w/bin/",
    chown: { user: "1", group: "2" },
    chmod: "755",
    followSymlinks: false,
    dirContents: false,
    allowWildcard: false,
    allowEmptyWildcard: false,
    createDestPath: true,
    unpack: false,
    excludes: [],
    parents: false,
  });
});

test("ADD <URL>: --unpack and --checksum are passed on; a checksum must be sha256", async () => {
  const sum = "sha256:" + "ab".repeat(32);
  const r = await convert(`FROM alpine\nADD --unpack --checksum=${sum} https://x.test/a.tgz /\n`);
  const http = vertices(r).find((v) => v.op.kind === "http")!;
  assert.deepEqual(http.op, {
    kind: "http",
    url: "https://x.test/a.tgz",
    filename: "a.tgz",
    checksum: sum,
  });
  const a = files(r).at(-1)!.op.actions[0]!;
  assert.equal(a.action === "copy" && a.unpack, true);
  for (const bad of ["sha256:00", "sha512:" + "ab".repeat(64), "ab".repeat(32)]) {
    await assert.rejects(
      convert(`FROM alpine\nADD --checksum=${bad} https://x.test/a.tgz /\n`),
      (e: Error) => /invalid checksum .*sha256:<64 hex digits>/.test(e.message),
    );
  }
});

test("ADD of two URLs to a directory: one copy action each", async () => {
  const r = await convert("FROM alpine\nADD https://x.test/a https://y.test/b /d/\n");
  const acts = files(r).at(-1)!.op.actions;
  assert.deepEqual(
    acts.map((a) => (a.action === "copy" ? [a.src, a.dest] : [])),
    [
      ["/a", "/d/"],
      ["/b", "/d/"],
    ],
  );
});
