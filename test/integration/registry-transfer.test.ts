// Uploads, mounts and failure handling against a real registry behind a fault-injecting proxy.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { setTimeout } from "node:timers/promises";
import { after, before, test } from "node:test";
import { ContentStore } from "../../src/content/index.js";
import { KilnError } from "../../src/errors.js";
import { MediaType, toBlob } from "../../src/oci/index.js";
import {
  RegistryClient,
  pullImage,
  pushImage,
  type TransferProgress,
} from "../../src/registry/index.js";
import { startRegistry, type RunningRegistry } from "../fixtures/registry.js";
import { startFaultProxy, type FaultProxy } from "../fixtures/registry-proxy.js";
import { buildIndex, generated } from "../fixtures/registry-images.js";

let dir: string;
let reg: RunningRegistry;
let proxy: FaultProxy;
let store: ContentStore;
let client: RegistryClient;
const progress: TransferProgress[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-registry-transfer-"));
  reg = await startRegistry({ auth: "none" });
  proxy = await startFaultProxy(reg.host);
  store = await ContentStore.open(join(dir, "store"));
  client = new RegistryClient({
    auth: () => Promise.resolve(undefined),
    retry: { attempts: 4, baseDelayMs: 5, maxDelayMs: 20 },
    onProgress: (p) => progress.push(p),
  });
});
after(async () => {
  client.close();
  await proxy.stop();
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

const repoOf = (repository: string) => ({ registry: proxy.host, repository });
const since = (mark: number) => proxy.requests.slice(mark);

async function expectCode(p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, `expected KilnError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

async function sha256(stream: Readable): Promise<string> {
  const h = createHash("sha256");
  for await (const c of stream) h.update(c as Buffer);
  return `sha256:${h.digest("hex")}`;
}

test("chunked upload of a 70 MiB generated blob, then a verified streaming download", async () => {
  const size = 70 * 1024 * 1024;
  const gen = generated(size, "big");
  const info = await store.ingest(Readable.from(gen.chunks()), { digest: gen.digest, size });
  const desc = { mediaType: MediaType.ociLayerGzip, ...info };
  const repo = repoOf("kiln/big");
  const mark = proxy.requests.length;
  assert.equal(await client.pushBlob(repo, desc, () => store.openRead(desc.digest)), "uploaded");
  const patches = since(mark).filter((r) => r.method === "PATCH");
  // 16 MiB chunks: 4 full and one of 6 MiB.
  assert.equal(patches.length, 5);
  assert.deepEqual(
    patches.map((p) => p.headers["content-range"]),
    [0, 1, 2, 3, 4].map((i) => `${i * 16 * 1048576}-${Math.min((i + 1) * 16 * 1048576, size) - 1}`),
  );
  assert.ok(patches.every((p) => p.status === 202));
  assert.equal(since(mark).filter((r) => r.method === "PUT" && r.status === 201).length, 1);
  const pushed = progress.filter((p) => p.direction === "push" && p.digest === desc.digest);
  assert.equal(pushed.at(-1)?.status, "done");
  assert.equal(await sha256(client.fetchBlob(repo, desc)), desc.digest);
  assert.equal(await client.blobExists(repo, desc.digest), size);
});

test("cross-repository mount: the second repository gets every blob without an upload", async () => {
  const image = await buildIndex(
    store,
    [
      { os: "linux", architecture: "amd64" },
      { os: "linux", architecture: "arm64" },
    ],
    "mount",
  );
  await pushImage(client, store, image.index, repoOf("kiln/source"), ["v1"]);
  const mark = proxy.requests.length;
  await pushImage(client, store, image.index, repoOf("kiln/target"), ["v1"], {
    mountFrom: ["kiln/source"],
  });
  const reqs = since(mark);
  const mounts = reqs.filter((r) => r.method === "POST" && r.path.includes("mount="));
  assert.equal(mounts.length, image.blobs.length);
  assert.ok(mounts.every((r) => r.status === 201 && r.path.includes("from=kiln%2Fsource")));
  assert.equal(
    reqs.filter((r) => r.method === "PATCH" || (r.method === "PUT" && r.path.includes("/blobs/")))
      .length,
    0,
  );
  const target = await ContentStore.open(join(dir, "mounted"));
  const r = await pullImage(client, target, repoOf("kiln/target"), "v1");
  assert.equal(r.manifests.length, 2);

  // Mounting from a repository without the blob falls back to a normal upload (202).
  const lone = await store.putBytes(Buffer.from("not in kiln/source"));
  const desc = { mediaType: MediaType.ociLayer, ...lone };
  const m2 = proxy.requests.length;
  assert.equal(
    await client.pushBlob(repoOf("kiln/target"), desc, () => store.openRead(desc.digest), {
      mountFrom: ["kiln/source"],
    }),
    "uploaded",
  );
  assert.equal(
    since(m2).filter((r) => r.method === "POST" && r.status === 202).length,
    1,
    "the mount's session is reused",
  );
});

test("retries: injected 503 and connection resets on reads, then success", async () => {
  const image = await buildIndex(store, [{ os: "linux", architecture: "amd64" }], "retry");
  const repo = repoOf("kiln/retry");
  await pushImage(client, store, image.index, repo, ["v1"]);
  proxy.inject({
    method: "GET",
    path: /\/manifests\/v1$/,
    fault: { kind: "respond", status: 503 },
    times: 2,
  });
  proxy.inject({ method: "HEAD", path: /\/manifests\/v1$/, fault: { kind: "reset" } });
  const mark = proxy.requests.length;
  assert.deepEqual(await client.resolve(repo, "v1"), image.index);
  const got = await client.getManifest(repo, "v1");
  assert.equal(got.descriptor.digest, image.index.digest);
  assert.deepEqual(
    since(mark).map((r) => `${r.method} ${r.status}`),
    ["HEAD 0", "HEAD 200", "GET 503", "GET 503", "GET 200"],
  );
  proxy.inject({
    method: "GET",
    path: /\/manifests\/v1$/,
    fault: { kind: "respond", status: 429, headers: { "Retry-After": "0" } },
  });
  assert.equal((await client.getManifest(repo, "v1")).descriptor.digest, image.index.digest);
});

test("a dropped blob download resumes with a Range request", async () => {
  const size = 3 * 1024 * 1024;
  const gen = generated(size, "resume");
  const info = await store.ingest(Readable.from(gen.chunks()), { digest: gen.digest });
  const desc = { mediaType: MediaType.ociLayer, ...info };
  const repo = repoOf("kiln/resume");
  await client.pushBlob(repo, desc, () => store.openRead(desc.digest));
  proxy.inject({
    method: "GET",
    path: /\/blobs\/sha256:/,
    fault: { kind: "reset-after", bytes: 1_000_000 },
  });
  const mark = proxy.requests.length;
  const target = await ContentStore.open(join(dir, "resume"));
  await target.ingest(client.fetchBlob(repo, desc), { digest: desc.digest, size });
  const gets = since(mark).filter((r) => r.method === "GET");
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.headers.range, undefined);
  assert.match(gets[1]!.headers.range ?? "", /^bytes=\d+-$/);
  assert.ok(Number(/=(\d+)-/.exec(gets[1]!.headers.range!)![1]) > 0);
  assert.equal(gets[1]!.status, 206);
});

test("a failed upload restarts with a fresh session, for monolithic and chunked uploads", async () => {
  const small = await store.putBytes(Buffer.from("restart me".repeat(100)));
  const desc = { mediaType: MediaType.ociLayer, ...small };
  const repo = repoOf("kiln/restart");
  proxy.inject({
    method: "PUT",
    path: /\/blobs\/uploads\//,
    fault: { kind: "respond", status: 503 },
  });
  let mark = proxy.requests.length;
  assert.equal(await client.pushBlob(repo, desc, () => store.openRead(desc.digest)), "uploaded");
  assert.equal(since(mark).filter((r) => r.method === "POST").length, 2);

  const chunky = new RegistryClient({
    auth: () => Promise.resolve(undefined),
    chunkThreshold: 1024,
    chunkSize: 4096,
    retry: { attempts: 3, baseDelayMs: 5 },
  });
  const mid = await store.putBytes(Buffer.alloc(10_000, "chunked"));
  const midDesc = { mediaType: MediaType.ociLayer, ...mid };
  proxy.inject({ method: "PATCH", path: /\/blobs\/uploads\//, fault: { kind: "reset" } });
  mark = proxy.requests.length;
  assert.equal(
    await chunky.pushBlob(repo, midDesc, () => store.openRead(midDesc.digest)),
    "uploaded",
  );
  const reqs = since(mark);
  assert.equal(reqs.filter((r) => r.method === "POST").length, 2);
  assert.equal(reqs.filter((r) => r.method === "PATCH" && r.status === 202).length, 3);
  assert.equal(await chunky.blobExists(repo, midDesc.digest), 10_000);
  // chunks stream off the content by the descriptor's size: content of another size is named
  for (const size of [12_000, 8_000]) {
    await assert.rejects(
      chunky.pushBlob(repo, { ...midDesc, digest: `sha256:${"5".repeat(64)}`, size }, () =>
        store.openRead(midDesc.digest),
      ),
      (e) => e instanceof KilnError && e.code === "E_BLOB_SIZE",
    );
  }
  chunky.close();
});

test("retries are bounded: a registry that keeps failing gives E_REGISTRY after the policy's attempts", async () => {
  const repo = repoOf("kiln/retry");
  proxy.inject({
    method: "GET",
    path: /\/manifests\/down$/,
    fault: { kind: "respond", status: 503 },
    times: 100,
  });
  const mark = proxy.requests.length;
  const e = await expectCode(client.getManifest(repo, "down"), "E_REGISTRY");
  assert.match(e.message, /503 .*kiln\/retry:down.*UNAVAILABLE/);
  assert.equal(since(mark).length, 4);
});

test("corrupt content is detected: blob and manifest digests, malformed JSON", async () => {
  const image = await buildIndex(store, [{ os: "linux", architecture: "amd64" }], "corrupt");
  const repo = repoOf("kiln/corrupt");
  await pushImage(client, store, image.index, repo, ["v1"]);
  const layer = image.manifests[0]!.doc.layers[1]!;
  proxy.inject({
    method: "GET",
    path: new RegExp(`/blobs/${layer.digest}$`),
    fault: { kind: "corrupt" },
  });
  const target = await ContentStore.open(join(dir, "corrupt"));
  await expectCode(
    target.ingest(client.fetchBlob(repo, layer), { digest: layer.digest }),
    "E_DIGEST_MISMATCH",
  );
  assert.equal(await target.has(layer.digest), false);
  assert.deepEqual(await readdir(join(target.root, ".ingest")), []);

  proxy.inject({ method: "GET", path: /\/manifests\/v1$/, fault: { kind: "corrupt" } });
  const e = await expectCode(client.getManifest(repo, "v1"), "E_DIGEST_MISMATCH");
  assert.match(e.message, /kiln\/corrupt:v1/);
  proxy.inject({ method: "GET", path: /\/manifests\/sha256:/, fault: { kind: "corrupt" } });
  await expectCode(client.getManifest(repo, image.manifests[0]!.desc.digest), "E_DIGEST_MISMATCH");

  proxy.inject({
    method: "GET",
    path: /\/manifests\/v1$/,
    fault: {
      kind: "respond",
      status: 200,
      headers: { "Content-Type": MediaType.ociManifest },
      body: "{not json",
    },
  });
  const bad = await expectCode(client.getManifest(repo, "v1"), "E_MANIFEST_INVALID");
  assert.match(bad.message, /kiln\/corrupt:v1: not JSON/);
  const wrongShape = toBlob(
    { schemaVersion: 2, manifests: "no" },
    MediaType.ociIndex,
  ).bytes.toString();
  proxy.inject({
    method: "GET",
    path: /\/manifests\/v1$/,
    fault: {
      kind: "respond",
      status: 200,
      headers: { "Content-Type": MediaType.ociIndex },
      body: wrongShape,
    },
  });
  await expectCode(client.getManifest(repo, "v1"), "E_MANIFEST_INVALID");
});

test("pushing content whose bytes do not match the descriptor fails with E_DIGEST_MISMATCH", async () => {
  const real = await store.putBytes(Buffer.from("actual bytes"));
  const lie = {
    mediaType: MediaType.ociLayer,
    digest: `sha256:${"1".repeat(64)}`,
    size: real.size,
  };
  await expectCode(
    client.pushBlob(repoOf("kiln/lie"), lie, () => store.openRead(real.digest)),
    "E_DIGEST_MISMATCH",
  );
});

test("manifests go up more at once than blobs: each is a round trip, not bandwidth", async () => {
  const platforms = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64", "386", "mips64le"];
  const image = await buildIndex(
    store,
    platforms.map((architecture) => ({ os: "linux", architecture })),
    "many",
  );
  const mark = proxy.requests.length;
  await pushImage(client, store, image.index, repoOf("many/app"), ["v1"]);
  const puts = since(mark).filter((r) => r.method === "PUT" && /\/manifests\/sha256:/.test(r.path));
  assert.equal(puts.length, platforms.length);
  // the most requests in flight at one moment (each start, against the others' spans)
  const overlap = Math.max(
    ...puts.map((p) => puts.filter((q) => q.started <= p.started && p.started < q.ended!).length),
  );
  assert.ok(
    overlap > client.maxConcurrency,
    `at most ${overlap} manifests in flight (blobs: ${client.maxConcurrency})`,
  );
});

test("a blob still being written streams up as it is written; commit closes the upload with its digest", async () => {
  const body = new PassThrough();
  const mark = proxy.requests.length;
  const upload = client.uploadWhileWritten(repoOf("kiln/streamed"), body);
  const h = createHash("sha256");
  let size = 0;
  let lastWrite = 0;
  for (let i = 0; i < 40; i++) {
    const chunk = randomBytes(64 * 1024);
    h.update(chunk);
    size += chunk.length;
    if (!body.write(chunk)) await once(body, "drain");
    await setTimeout(5);
    lastWrite = performance.now();
  }
  body.end();
  const desc = { mediaType: MediaType.ociLayer, digest: `sha256:${h.digest("hex")}`, size };
  assert.equal(await upload.commit(desc), "uploaded");
  const patch = since(mark).find((r) => r.method === "PATCH");
  assert.ok(patch, "one PATCH carried the bytes");
  assert.equal(patch.headers["content-range"], undefined, "a stream, not a ranged chunk");
  assert.ok(patch.started < lastWrite, "the upload began before the last bytes were written");
  assert.equal(await sha256(client.fetchBlob(repoOf("kiln/streamed"), desc)), desc.digest);
});

test("a registry that refuses a streamed upload fails its commit and drops the body at once", async () => {
  proxy.inject({
    method: "PATCH",
    path: /\/kiln\/refused\/blobs\/uploads\//,
    fault: { kind: "respond", status: 416 },
  });
  const body = new PassThrough();
  const upload = client.uploadWhileWritten(repoOf("kiln/refused"), body);
  body.write(randomBytes(1024));
  await once(body, "close");
  assert.equal(body.destroyed, true, "the writer can stop writing");
  await expectCode(
    upload.commit({ mediaType: MediaType.ociLayer, digest: `sha256:${"2".repeat(64)}`, size: 1 }),
    "E_REGISTRY",
  );
});
