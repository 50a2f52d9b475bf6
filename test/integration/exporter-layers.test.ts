// Layer blobs made while a build runs: each layer is compressed once, straight into the
// content store (one write), announced when ready, remembered per snapshot for later exports,
// and its diffID is the sha256 of what gunzip gives back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { BuildCache } from "../../src/cache/index.js";
import { ContentStore } from "../../src/content/index.js";
import { LayerBlobs } from "../../src/exporter/layers.js";
import { MetadataStore } from "../../src/metadata/index.js";
import { Snapshotter } from "../../src/snapshot/index.js";

const opts = { skip: process.getuid?.() === 0 ? false : "needs root for overlayfs mounts" };

/** Commits a snapshot holding `files` (all dated 2001), as a build step would. */
async function layer(snaps: Snapshotter, id: string, files: Record<string, string>) {
  const active = await snaps.prepare(`active-${id}`, []);
  const when = new Date("2001-01-01T00:00:00Z");
  await mkdir(join(active.rootfs, "app"));
  for (const [name, text] of Object.entries(files)) {
    await writeFile(join(active.rootfs, "app", name), text);
    await utimes(join(active.rootfs, "app", name), when, when);
  }
  await utimes(join(active.rootfs, "app"), when, when);
  await snaps.commit(active.id, active, id);
  return { snapshot: id, producer: `sha256:${id}` };
}

test("each layer is compressed once into the store, announced and remembered", opts, async () => {
  const root = await mkdtemp(join(tmpdir(), "kiln-layers-"));
  try {
    const snapshots = new Snapshotter(join(root, "snapshots"));
    const metadata = MetadataStore.open(root);
    const content = await ContentStore.open(join(root, "content"), metadata);
    const cache = new BuildCache(metadata, (id) => snapshots.exists(id));
    let writes = 0;
    // a blob is streamed in, or (igzip, large layers) written into a file by the compressor
    const ingest = content.ingest.bind(content);
    content.ingest = (source, expected) => {
      writes++;
      return ingest(source, expected);
    };
    const ingestWritten = content.ingestWritten.bind(content);
    content.ingestWritten = (fill, expected) => {
      writes++;
      return ingestWritten(fill, expected);
    };
    const big = "x".repeat(300_000);
    const amd64 = await layer(snapshots, "copy-amd64", { "a.txt": big, "b.txt": "b" });
    const arm64 = await layer(snapshots, "copy-arm64", { "a.txt": big, "b.txt": "b" });
    const other = await layer(snapshots, "run-arm64", { "a.txt": "changed" });

    const blobs = new LayerBlobs({ content, cache, snapshots }, { compression: "gzip" });
    const ready: string[] = [];
    blobs.onBlob((b) => ready.push(b.digest));
    for (const l of [amd64, arm64, other]) blobs.prepare(l);
    // asked again while it is being made: the same blob, not a second compression
    const [a, b, c, a2] = await Promise.all(
      [amd64, arm64, other, amd64].map((l) => blobs.blobOf(l)),
    );
    await blobs.settle();

    assert.deepEqual(a, a2);
    assert.equal(a!.digest, b!.digest, "the same content gives the same bytes");
    assert.notEqual(a!.digest, c!.digest);
    assert.equal(writes, 3, "one write per layer");
    assert.deepEqual(ready.sort(), [a!.digest, b!.digest, c!.digest].sort(), "each announced once");
    for (const blob of [a!, c!]) {
      const bytes = await content.readBytes(blob.digest);
      assert.equal(bytes.length, blob.size);
      const diffID = `sha256:${createHash("sha256").update(gunzipSync(bytes)).digest("hex")}`;
      assert.equal(diffID, blob.diffID);
    }
    // remembered per snapshot: a later export finds them without compressing
    assert.deepEqual(await cache.blobFor("copy-arm64", "gzip-d2"), b);
    const again = new LayerBlobs({ content, cache, snapshots }, { compression: "gzip" });
    assert.deepEqual(await again.blobOf(arm64), b);
    assert.equal(writes, 3);
    // another compression level is another blob
    const fast = new LayerBlobs(
      { content, cache, snapshots },
      { compression: "gzip", compressionLevel: 1 },
    );
    assert.notEqual((await fast.blobOf(amd64)).digest, a!.digest);
    assert.equal(writes, 4);

    // in a multi-platform build (twins), a layer with the same headers as one made before is
    // hashed first: the same content shares that blob (no compression, no write); the same
    // headers over other content (riscv64: b.txt "c", same size and time) are compressed
    const twinA = await layer(snapshots, "twin-amd64", { "a.txt": big, "b.txt": "b" });
    const twinB = await layer(snapshots, "twin-arm64", { "a.txt": big, "b.txt": "b" });
    const twinC = await layer(snapshots, "twin-riscv64", { "a.txt": big, "b.txt": "c" });
    const twins = new LayerBlobs(
      { content, cache, snapshots },
      { compression: "gzip", twins: true },
    );
    for (const l of [twinA, twinB, twinC]) twins.prepare(l);
    const [x, y, z] = await Promise.all([twinA, twinB, twinC].map((l) => twins.blobOf(l)));
    await twins.settle();
    assert.deepEqual(y, x, "the twin shares the blob");
    assert.equal(x!.digest, a!.digest, "the same bytes as the same content in another layer");
    assert.notEqual(z!.digest, x!.digest);
    assert.equal(writes, 6, "the twin was not compressed; the look-alike was");
    assert.deepEqual(await cache.blobFor("twin-arm64", "gzip-d2"), x);
    const cBytes = gunzipSync(await content.readBytes(z!.digest));
    assert.equal(`sha256:${createHash("sha256").update(cBytes).digest("hex")}`, z!.diffID);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
