import { test } from "node:test";
import assert from "node:assert/strict";
import {
  compileGlob,
  compilePatterns,
  hasWildcard,
  splitWildcards,
} from "../../../src/fileops/index.js";
import { isKilnError } from "../../../src/errors.js";

test("source wildcards follow Go filepath.Match over the whole path", () => {
  const cases: [string, string, boolean][] = [
    ["*.go", "main.go", true],
    ["*.go", "sub/main.go", false],
    // `**` is just `*` for COPY sources: it never crosses a slash
    ["**/*.go", "sub/main.go", true],
    ["**/*.go", "sub/deep/main.go", false],
    ["**/*.go", "main.go", false],
    ["a?c", "abc", true],
    ["a?c", "ac", false],
    ["a?c", "a/c", false],
    ["[a-c]x", "bx", true],
    ["[^a-c]x", "bx", false],
    ["[^a-c]x", "dx", true],
    ["[!a]x", "!x", true],
    ["\\*", "*", true],
    ["\\*", "a", false],
    ["dir/*/f", "dir/x/f", true],
    ["*", ".hidden", true],
    ["[]a]", "a", false],
    ["[a-", "a", false],
    ["x\\", "x", false],
  ];
  for (const [pattern, path, want] of cases) {
    assert.equal(compileGlob(pattern)(path), want, `${pattern} ~ ${path}`);
  }
});

test("wildcard detection honours escapes; split stops at the first wildcard segment", () => {
  assert.equal(hasWildcard("a/b"), false);
  assert.equal(hasWildcard("a/\\*b"), false);
  assert.equal(hasWildcard("a/[b]"), true);
  assert.deepEqual(splitWildcards("src/lib/*.ts"), { dir: "src/lib", pattern: "*.ts" });
  assert.deepEqual(splitWildcards("/a/b*/c"), { dir: "a", pattern: "b*/c" });
  assert.deepEqual(splitWildcards("a/b"), { dir: "a/b", pattern: "" });
});

test("pattern lists follow moby/patternmatcher (dockerignore, --exclude, --parents)", () => {
  const cases: [string[], string, boolean][] = [
    [["*.txt"], "a.txt", true],
    [["*.txt"], "d/a.txt", false],
    [["**/*.txt"], "d/e/a.txt", true],
    [["**/*.txt"], "a.txt", true],
    [["**/abc"], "x/abc", true],
    [["**/abc"], "abc", true],
    [["**/abc"], "xabc", false],
    [["d/**"], "d/x/y", true],
    [["d/**"], "d", false],
    [["foo**"], "foobar/x", true],
    [["a/**/z"], "a/z", true],
    [["a/**/z"], "a/b/c/z", true],
    [["dir"], "dir/deep/file", true],
    [["*/*.png"], "dir1/x.png", true],
    [["*"], "a", true],
    [["*.txt", "!keep.txt"], "keep.txt", false],
    [["*.txt", "!keep.txt"], "other.txt", true],
    [["./sub/"], "sub/x", true],
    [["a.b"], "axb", false],
    [["x(1)"], "x(1)", true],
  ];
  for (const [patterns, path, want] of cases) {
    assert.equal(
      compilePatterns(patterns)!.match(path, undefined).matched,
      want,
      `${JSON.stringify(patterns)} ~ ${path}`,
    );
  }
});

test("pattern results are inherited from a matching parent directory", () => {
  const m = compilePatterns(["build", "!build/keep"])!;
  const dir = m.match("build", undefined);
  assert.equal(dir.matched, true);
  assert.equal(m.match("build/x", dir.info).matched, true);
  assert.equal(m.match("build/keep", dir.info).matched, false);
  assert.equal(m.hasExclusions, true);
  assert.equal(compilePatterns(["", "  "]), undefined);
});

test("malformed patterns are E_COPY_PATTERN errors", () => {
  for (const bad of ["!", "[a-"]) {
    assert.throws(
      () => compilePatterns([bad]),
      (e: unknown) => isKilnError(e) && e.code === "E_COPY_PATTERN",
    );
  }
});
