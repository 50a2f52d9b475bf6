import { test } from "node:test";
import assert from "node:assert/strict";
import { parseChmod } from "../../../src/fileops/index.js";
import { isKilnError } from "../../../src/errors.js";

test("octal --chmod replaces all 12 mode bits and is marked octal", () => {
  assert.equal(parseChmod("755")(0o600, false), 0o755);
  assert.equal(parseChmod("0644")(0o777, true), 0o644);
  assert.equal(parseChmod("04755")(0o600, false), 0o4755);
  assert.equal(parseChmod("0000755").octal, 0o755);
  assert.equal(parseChmod("u+x").octal, undefined);
});

test("symbolic --chmod follows BSD setmode as BuildKit's library implements it", () => {
  const cases: [string, number, boolean, number][] = [
    ["u+x", 0o644, false, 0o744],
    ["go-w", 0o777, false, 0o755],
    ["+x", 0o644, false, 0o755],
    ["u=rwx,g=rx,o=", 0, false, 0o750],
    ["a+rwx,o-w", 0, false, 0o775],
    // X only counts with +, and looks at the original mode or directory-ness
    ["a=rX", 0o640, true, 0o444],
    ["+X", 0o644, true, 0o755],
    ["+X", 0o644, false, 0o644],
    ["+X", 0o744, false, 0o755],
    ["u+x,g+X", 0o644, false, 0o744],
    // copying another class's bits
    ["g=u", 0o640, false, 0o660],
    ["o=g-w", 0o664, false, 0o664],
    ["u+s", 0o755, false, 0o4755],
    ["g+s", 0o755, true, 0o2755],
    ["o+s", 0o755, false, 0o755],
    ["+t", 0o755, true, 0o1755],
    ["=", 0o7777, false, 0o1000],
    ["u-w+x", 0o644, false, 0o544],
  ];
  for (const [spec, from, isDir, want] of cases) {
    assert.equal(
      parseChmod(spec)(from, isDir).toString(8),
      want.toString(8),
      `${spec} on ${from.toString(8)}${isDir ? " dir" : ""}`,
    );
  }
});

test("invalid --chmod values are E_CHMOD errors", () => {
  for (const bad of ["rwx", "8", "0788", "10000", "u+x,", "", "u*x", "z+x"]) {
    assert.throws(
      () => parseChmod(bad),
      (e: unknown) => isKilnError(e) && e.code === "E_CHMOD",
      bad,
    );
  }
});
