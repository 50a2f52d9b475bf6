// makeFilter: .dockerignore rules as the matcher applies them, asked per path of a walk.
import { test } from "node:test";
import assert from "node:assert/strict";
import dockerignore from "@balena/dockerignore";
import { makeFilter } from "../../../src/context/index.js";

test("makeFilter: a path deeper than every rule is decided as the matcher decides it", () => {
  const names = ["a", "b", "data", "d01", "d02", "keep", "x.log", ".kiln-bench", "tmp", "y"];
  const paths: string[] = [];
  const grow = (prefix: string, depth: number): void => {
    for (const n of names) {
      const p = prefix === "" ? n : `${prefix}/${n}`;
      paths.push(p);
      if (depth > 1) grow(p, depth - 1);
    }
  };
  grow("", 4);
  const ruleSets = [
    [".kiln-bench"],
    ["data/d0*", "!data/d01"],
    ["*.log", "!keep/*/x.log"],
    ["a/b/data", "/b/y/"],
    ["keep", "!keep/a", "keep/a/tmp"],
    ["**/tmp"],
    ["a[/]b", "y"],
    ["a[^x]b"],
    ["a\\/b"],
    ["?", "!b"],
    ["*"],
    ["./a/../data/*/y"],
  ];
  for (const rules of ruleSets) {
    const filter = makeFilter(rules, ".dockerignore");
    const matcher = dockerignore({ ignorecase: false }).add(rules);
    const differ = paths.filter((p) => filter.excluded(p) !== matcher.ignores(p));
    assert.deepEqual(differ, [], JSON.stringify(rules));
    assert.ok(
      paths.some((p) => filter.excluded(p)) || rules.includes("a\\/b"),
      `${JSON.stringify(rules)} excludes something`,
    );
  }
});
