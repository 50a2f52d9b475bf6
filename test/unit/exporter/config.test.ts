// The final image config's timestamps (BuildKit's SOURCE_DATE_EPOCH rules) and where each kind
// of annotation lands.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveAnnotations } from "../../../src/exporter/annotations.js";
import { epochTime, finalConfig, type PlatformImage } from "../../../src/exporter/image.js";
import type { BlobRecord } from "../../../src/cache/index.js";

const blob = (n: number): BlobRecord => ({
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: n,
  mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
  diffID: `sha256:${String(n + 1)
    .repeat(64)
    .slice(0, 64)}`,
});

/** A base with one layer (2024) and one metadata entry, then COPY (a layer), ENV, RUN (a layer). */
function image(copyMade: string, runMade: string): PlatformImage {
  return {
    platform: { os: "linux", architecture: "amd64" },
    result: {
      layers: [
        { snapshot: "base", blob: blob(1) },
        { snapshot: "copy", producer: "v-copy", created: copyMade },
        { snapshot: "run", producer: "v-run", created: runMade },
      ],
    },
    config: {
      architecture: "amd64",
      os: "linux",
      created: "2024-05-01T10:00:00Z",
      rootfs: { type: "layers", diff_ids: [] },
      history: [
        { created: "2024-05-01T10:00:00Z", created_by: "base layer" },
        { created: "2024-05-01T10:00:01Z", created_by: "CMD", empty_layer: true },
        { created_by: "COPY a /a # buildkit" },
        { created_by: "ENV X=1" },
        { created_by: "RUN make # buildkit" },
      ],
    },
    baseHistoryLength: 2,
    historyProducers: ["v-copy", undefined, "v-run"],
  };
}

const blobs = [blob(1), blob(2), blob(3)];

test("without an epoch: each step is dated by when its layer was made", () => {
  const c = finalConfig(
    image("2026-11-27T10:00:00.123Z", "2026-11-27T10:05:00Z"),
    blobs,
    undefined,
  );
  assert.deepEqual(
    c.history!.map((h) => [h.created, h.empty_layer ?? false]),
    [
      ["2024-05-01T10:00:00Z", false],
      ["2024-05-01T10:00:01Z", true],
      ["2026-11-27T10:00:00.123Z", false],
      ["2026-11-27T10:00:00.123Z", true],
      ["2026-11-27T10:05:00Z", false],
    ],
  );
  assert.equal(c.created, "2026-11-27T10:05:00Z");
  assert.deepEqual(
    c.rootfs.diff_ids,
    blobs.map((b) => b.diffID),
  );
});

test("an epoch in the past clamps the build's own entries and created; base entries stay", () => {
  const c = finalConfig(image("2026-11-27T10:00:00Z", "2026-11-27T10:05:00Z"), blobs, 0);
  assert.deepEqual(
    c.history!.map((h) => h.created),
    [
      "2024-05-01T10:00:00Z",
      "2024-05-01T10:00:01Z",
      "1970-01-01T00:00:00Z",
      "1970-01-01T00:00:00Z",
      "1970-01-01T00:00:00Z",
    ],
  );
  assert.equal(c.created, "1970-01-01T00:00:00Z");
});

test("an epoch dates every entry the build wrote, metadata-only ones and future epochs too", () => {
  const future = Date.parse("2030-01-01T00:00:00Z") / 1000;
  const c = finalConfig(image("2026-11-27T10:00:00Z", "2026-11-27T10:05:00Z"), blobs, future);
  assert.deepEqual(
    c.history!.map((h) => h.created),
    [
      "2024-05-01T10:00:00Z",
      "2024-05-01T10:00:01Z",
      "2030-01-01T00:00:00Z",
      "2030-01-01T00:00:00Z",
      "2030-01-01T00:00:00Z",
    ],
  );
  assert.equal(c.created, "2030-01-01T00:00:00Z");
  // an image with no entry of its own keeps the base's time, clamped to the epoch
  const base = image("2026-11-27T10:00:00Z", "2026-11-27T10:05:00Z");
  base.config.history = base.config.history!.slice(0, 2);
  base.historyProducers = [];
  base.result.layers = base.result.layers.slice(0, 1);
  assert.equal(finalConfig(base, blobs.slice(0, 1), future).created, "2024-05-01T10:00:01Z");
  assert.equal(finalConfig(base, blobs.slice(0, 1), 0).created, "1970-01-01T00:00:00Z");
});

test("epoch times are written as Go writes them", () => {
  assert.equal(epochTime(0), "1970-01-01T00:00:00Z");
  assert.equal(epochTime(1700000000), "2023-11-14T22:13:20Z");
});

test("annotations: manifest by default, typed targets, platform-scoped values win", () => {
  const a = resolveAnnotations({
    plain: "m",
    "index:title": "t",
    "index,manifest:both": "b",
    "manifest-descriptor:md": "d",
    "index-descriptor:id": "i",
    "manifest[linux/arm64/v8]:plain": "arm",
  });
  const amd64 = { os: "linux", architecture: "amd64" };
  const arm64 = { os: "linux", architecture: "arm64" };
  assert.deepEqual(a.index, { title: "t", both: "b" });
  assert.deepEqual(a.indexDescriptor, { id: "i" });
  assert.deepEqual(a.manifest(amd64), { plain: "m", both: "b" });
  assert.deepEqual(a.manifest(arm64), { plain: "arm", both: "b" });
  assert.deepEqual(a.manifestDescriptor(arm64), { md: "d" });
});
