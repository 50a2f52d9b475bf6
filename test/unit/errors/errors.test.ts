import { test } from "node:test";
import assert from "node:assert/strict";
import { KilnError, isKilnError, messageOf } from "../../../src/errors.js";

test("KilnError carries code, hint and cause", () => {
  const cause = new Error("boom");
  const e = new KilnError("E_X", "it failed", { hint: "try again", cause });
  assert.equal(e.code, "E_X");
  assert.equal(e.hint, "try again");
  assert.equal(e.cause, cause);
  assert.ok(isKilnError(e));
  assert.ok(!isKilnError(cause));
  assert.equal(messageOf(cause), "boom");
  assert.equal(messageOf("plain"), "plain");
});
