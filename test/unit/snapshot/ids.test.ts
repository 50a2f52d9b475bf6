// Snapshot ids: the kind `kiln du` shows is read back from the id that was minted for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  flatSnapshotId,
  isFlatSnapshot,
  pulledLayerId,
  snapshotKind,
  stepSnapshotId,
} from "../../../src/snapshot/index.js";

test("every minted id reads back as its kind", () => {
  const key = `sha256:${"ab".repeat(32)}`;
  assert.equal(snapshotKind(pulledLayerId(key)), "pulled");
  assert.equal(pulledLayerId(key), pulledLayerId("ab".repeat(32)), "one id per chain id");
  assert.equal(snapshotKind(stepSnapshotId("exec", key)), "exec");
  assert.equal(snapshotKind(stepSnapshotId("file", key)), "file");
  assert.equal(snapshotKind(stepSnapshotId("http", key)), "other");
  assert.notEqual(stepSnapshotId("exec", key), stepSnapshotId("exec", key), "fresh each time");
  const flat = flatSnapshotId(["a", "b"]);
  assert.ok(isFlatSnapshot(flat));
  assert.equal(snapshotKind(flat), "flat");
  assert.equal(flat, flatSnapshotId(["a", "b"]), "a chain prefix has one flattening");
  assert.notEqual(flat, flatSnapshotId(["a"]));
  assert.ok(!isFlatSnapshot(pulledLayerId(key)));
});
