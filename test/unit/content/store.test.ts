import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { ContentStore, refNameAnnotation } from "../../../src/content/index.js";
import { KilnError } from "../../../src/errors.js";
import { MediaType, digestOf } from "../../../src/oci/index.js";
import { schemaErrors } from "../oci/oci-schema.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-content-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function freshStore(name: string): Promise<ContentStore> {
  return ContentStore.open(join(dir, name));
}

/** A generated stream of `n` chunks of pseudo-random data, never held whole in memory. */
function* chunks(seed: string, n: number, size = 64 * 1024): Generator<Buffer> {
  for (let i = 0; i < n; i++) yield Buffer.alloc(size, `${seed}${i}`);
}

function digestOfChunks(seed: string, n: number): string {
  const h = createHash("sha256");
  for (const c of chunks(seed, n)) h.update(c);
  return `sha256:${h.digest("hex")}`;
}

async function assertKilnError(p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, `expected KilnError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

test("open creates a valid OCI image layout", async () => {
  const store = await freshStore("layout");
  assert.equal(
    schemaErrors("layout", JSON.parse(await readFile(join(store.root, "oci-layout"), "utf8"))),
    "",
  );
  assert.equal(schemaErrors("index", await store.readIndex()), "");
  await ContentStore.open(store.root); // idempotent
});

test("ingest streams, hashes and stores at blobs/sha256/<hex>", async () => {
  const store = await freshStore("ingest");
  const expected = digestOfChunks("a", 40);
  const info = await store.ingest(Readable.from(chunks("a", 40)), {
    digest: expected,
    size: 40 * 64 * 1024,
  });
  assert.deepEqual(info, { digest: expected, size: 40 * 64 * 1024 });
  assert.equal(store.path(expected), join(store.root, "blobs", "sha256", expected.slice(7)));
  assert.ok(await store.has(expected));
  assert.equal(await store.size(expected), 40 * 64 * 1024);
  const h = createHash("sha256");
  for await (const c of store.openRead(expected)) h.update(c as Buffer);
  assert.equal(`sha256:${h.digest("hex")}`, expected);
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
});

test("putBytes / readBytes / delete", async () => {
  const store = await freshStore("bytes");
  const bytes = Buffer.from('{"hello":"world"}');
  const { digest } = await store.putBytes(bytes);
  assert.equal(digest, digestOf(bytes));
  assert.deepEqual(await store.readBytes(digest), bytes);
  await store.delete(digest);
  assert.equal(await store.has(digest), false);
  await assertKilnError(store.readBytes(digest), "E_BLOB_NOT_FOUND");
  await assertKilnError(store.size(digest), "E_BLOB_NOT_FOUND");
  await store.delete(digest); // deleting a missing blob is fine
});

test("digest and size mismatches are rejected and leave nothing behind", async () => {
  const store = await freshStore("mismatch");
  const wrong = digestOf(Buffer.from("other"));
  const e = await assertKilnError(
    store.putBytes(Buffer.from("data"), { digest: wrong }),
    "E_DIGEST_MISMATCH",
  );
  assert.match(e.message, new RegExp(wrong));
  assert.equal(await store.has(wrong), false);
  await assertKilnError(store.putBytes(Buffer.from("data"), { size: 3 }), "E_DIGEST_MISMATCH");
  await assertKilnError(store.putBytes(Buffer.from("data"), { size: 5 }), "E_DIGEST_MISMATCH");
  await assertKilnError(
    store.putBytes(Buffer.from("data"), { digest: "md5:abc" }),
    "E_DIGEST_INVALID",
  );
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
  assert.deepEqual(await readdir(join(store.root, "blobs", "sha256")), []);
});

test("a failing source stream leaves no temp file", async () => {
  const store = await freshStore("failing");
  async function* broken(): AsyncGenerator<Buffer> {
    yield Buffer.alloc(1024);
    await Promise.resolve();
    throw new Error("source died");
  }
  await assertKilnError(store.ingest(broken()), "E_CONTENT_WRITE");
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
});

test("a source is read only once its temp file exists, so a failure's cleanup finds the file", async () => {
  // A file whose creation was still pending when the source failed could appear after the
  // cleanup removed its path (seen in CI: a leftover .ingest file).
  const store = await freshStore("created-first");
  const seen: string[][] = [];
  async function* source(): AsyncGenerator<Buffer> {
    seen.push(await readdir(join(store.root, ".ingest")));
    yield Buffer.from("data");
    throw new Error("source died");
  }
  await assertKilnError(store.ingest(source()), "E_CONTENT_WRITE");
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.length, 1, "the temp file exists before the first read");
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
});

test("a blob a writer puts in the descriptor it is given is stored verified; a bad one leaves nothing", async () => {
  const store = await freshStore("written");
  const bytes = randomBytes(3 * 1024 * 1024 + 7);
  const fill = (fd: number) => {
    writeSync(fd, bytes.subarray(0, 1000));
    writeSync(fd, bytes.subarray(1000));
    return Promise.resolve();
  };
  const info = await store.ingestWritten(fill, { digest: digestOf(bytes) });
  assert.deepEqual(info, { digest: digestOf(bytes), size: bytes.length });
  assert.ok((await store.readBytes(info.digest)).equals(bytes));
  await assertKilnError(
    store.ingestWritten(fill, { digest: digestOf(Buffer.from("other")) }),
    "E_DIGEST_MISMATCH",
  );
  await assertKilnError(
    store.ingestWritten(() => Promise.reject(new Error("writer died"))),
    "E_CONTENT_WRITE",
  );
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
});

test("concurrent ingest of the same blob is safe", async () => {
  const store = await freshStore("concurrent");
  const expected = digestOfChunks("same", 64);
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      store.ingest(Readable.from(chunks("same", 64)), { digest: expected }),
    ),
  );
  for (const r of results) assert.equal(r.digest, expected);
  assert.deepEqual(await readdir(join(store.root, "blobs", "sha256")), [expected.slice(7)]);
  const h = createHash("sha256").update(await readFile(store.path(expected)));
  assert.equal(`sha256:${h.digest("hex")}`, expected);
  assert.deepEqual(await readdir(join(store.root, ".ingest")), []);
});

test("corruption on disk is detected by openRead (at the end) and readBytes", async () => {
  const store = await freshStore("corrupt");
  const data = randomBytes(200_000);
  const { digest } = await store.putBytes(data);
  const flipped = Buffer.from(data);
  flipped[100_000] = flipped[100_000]! ^ 0xff;
  await writeFile(store.path(digest), flipped);
  await assertKilnError(store.readBytes(digest), "E_DIGEST_MISMATCH");
  let received = 0;
  const e = await assertKilnError(
    (async () => {
      for await (const c of store.openRead(digest)) received += (c as Buffer).byteLength;
    })(),
    "E_DIGEST_MISMATCH",
  );
  assert.equal(received, data.byteLength, "error comes after all bytes streamed");
  assert.match(e.message, /is corrupt/);
  await assertKilnError(
    (async () => {
      for await (const c of store.openRead(digestOf(Buffer.from("absent"))))
        received += (c as Buffer).byteLength;
    })(),
    "E_BLOB_NOT_FOUND",
  );
});

test("addToIndex records ref names and replaces entries of the same name", async () => {
  const store = await freshStore("index");
  const a = { mediaType: MediaType.ociManifest, digest: digestOf(Buffer.from("a")), size: 1 };
  const b = { mediaType: MediaType.ociIndex, digest: digestOf(Buffer.from("b")), size: 1 };
  await Promise.all([store.addToIndex(a, "v1"), store.addToIndex(b, "v2"), store.addToIndex(a)]);
  await store.addToIndex(b, "v1");
  await store.addToIndex(a);
  const index = await store.readIndex();
  assert.equal(schemaErrors("index", index), "");
  const byName = (n: string) =>
    index.manifests.filter((m) => m.annotations?.[refNameAnnotation] === n);
  assert.deepEqual(
    byName("v1").map((m) => m.digest),
    [b.digest],
  );
  assert.deepEqual(
    byName("v2").map((m) => m.digest),
    [b.digest],
  );
  assert.equal(index.manifests.filter((m) => m.annotations === undefined).length, 1);
  assert.equal(index.manifests.length, 3);
});
