// The registry client against a real distribution 2.8 registry: anonymous and htpasswd (Basic).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContentStore } from "../../src/content/index.js";
import { KilnError } from "../../src/errors.js";
import { parseConfig, parseIndex, parseManifest } from "../../src/oci/index.js";
import {
  RegistryClient,
  pullImage,
  pushImage,
  type TransferProgress,
} from "../../src/registry/index.js";
import { readAccessLog, startRegistry, type RunningRegistry } from "../fixtures/registry.js";
import { buildIndex, type BuiltImage } from "../fixtures/registry-images.js";
import { schemaErrors } from "../unit/oci/oci-schema.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-registry-it-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectCode(p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, `expected KilnError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.ok(e.hint, "every error carries a hint");
    assert.ok(!e.message.includes("\n"), "one-line message");
    return e;
  }
  assert.fail(`expected ${code}`);
}

const platforms = [
  { os: "linux", architecture: "amd64" },
  { os: "linux", architecture: "arm", variant: "v7" },
  { os: "linux", architecture: "386" },
];

describe("anonymous registry", () => {
  let reg: RunningRegistry;
  let store: ContentStore;
  let image: BuiltImage;
  const progress: TransferProgress[] = [];
  let client: RegistryClient;

  before(async () => {
    reg = await startRegistry({ auth: "none" });
    store = await ContentStore.open(join(dir, "anon"));
    image = await buildIndex(store, platforms, "anon");
    client = new RegistryClient({
      auth: () => Promise.resolve(undefined),
      onProgress: (p) => progress.push(p),
    });
  });
  after(async () => {
    client.close();
    await reg.stop();
  });

  test("push of a 3-platform index uploads each shared blob once, children before the index", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const pushed = await pushImage(client, store, image.index, repo, ["v1", "latest"]);
    assert.deepEqual(pushed, image.index);
    const log = await readAccessLog(reg.logFile);
    const uploads = log.filter((e) => e.method === "PUT" && e.path.includes("/blobs/uploads/"));
    // 1 shared base layer + 3 own layers + 3 configs, each exactly once.
    assert.equal(uploads.length, 7);
    assert.equal(image.blobs.length, 7);
    const manifestPuts = log.filter((e) => e.method === "PUT" && e.path.includes("/manifests/"));
    const order = manifestPuts.map((e) => e.path.split("/manifests/")[1]);
    // the platforms' manifests (in parallel, any order) before the index, tagged last
    assert.deepEqual(order.slice(0, -2).sort(), image.manifests.map((m) => m.desc.digest).sort());
    assert.deepEqual(order.slice(-2), ["v1", "latest"]);
    assert.ok(manifestPuts.every((e) => e.status === 201));
    assert.ok(progress.some((p) => p.direction === "push" && p.status === "done"));

    // A second push finds everything there and uploads nothing.
    await pushImage(client, store, image.index, repo, ["v1"]);
    const again = (await readAccessLog(reg.logFile)).filter(
      (e) => e.method === "PUT" && e.path.includes("/blobs/uploads/"),
    );
    assert.equal(again.length, 7);
  });

  test("what was pushed reads back identically and validates against the OCI schemas", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const desc = await client.resolve(repo, "v1");
    assert.deepEqual(desc, image.index);
    const got = await client.getManifest(repo, "v1");
    assert.deepEqual(got.bytes, await store.readBytes(image.index.digest));
    const index = parseIndex(got.bytes, got.descriptor.mediaType);
    assert.equal(schemaErrors("index", index), "");
    for (const m of image.manifests) {
      const child = await client.getManifest(repo, m.desc.digest);
      const manifest = parseManifest(child.bytes, child.descriptor.mediaType);
      assert.equal(schemaErrors("manifest", manifest), "");
      const chunks: Buffer[] = [];
      for await (const c of client.fetchBlob(repo, manifest.config)) chunks.push(c as Buffer);
      assert.equal(schemaErrors("config", parseConfig(Buffer.concat(chunks))), "");
    }
  });

  test("pull with platform selection, including BuildKit's fallbacks", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const cases: [string, string | undefined, number][] = [
      ["amd64", undefined, 0],
      ["arm64", undefined, 1], // arm64 runs arm/v7
      ["arm", "v7", 1],
      ["386", undefined, 2],
    ];
    for (const [architecture, variant, expected] of cases) {
      const target = await ContentStore.open(join(dir, `pull-${architecture}`));
      const result = await pullImage(client, target, repo, "v1", {
        platform:
          variant === undefined
            ? { os: "linux", architecture }
            : { os: "linux", architecture, variant },
      });
      assert.equal(result.root.digest, image.index.digest);
      assert.deepEqual(
        result.manifests.map((m) => m.digest),
        [image.manifests[expected]!.desc.digest],
        `${architecture} → ${JSON.stringify(platforms[expected])}`,
      );
      for (const d of image.manifests[expected]!.doc.layers) assert.ok(await target.has(d.digest));
      assert.ok(await target.has(image.manifests[expected]!.doc.config.digest));
    }
    // amd64 falls back to 386 when an index has no amd64 entry.
    const only386 = await buildIndex(store, [{ os: "linux", architecture: "386" }], "only386");
    const repo386 = { registry: reg.host, repository: "kiln/only386" };
    await pushImage(client, store, only386.index, repo386, ["v1"]);
    const target = await ContentStore.open(join(dir, "pull-386"));
    const r = await pullImage(client, target, repo386, "v1", {
      platform: { os: "linux", architecture: "amd64" },
    });
    assert.deepEqual(
      r.manifests.map((m) => m.digest),
      [only386.manifests[0]!.desc.digest],
    );
    await expectCode(
      pullImage(client, target, repo, "v1", { platform: { os: "linux", architecture: "s390x" } }),
      "E_PLATFORM_NOT_FOUND",
    );
  });

  test("pull of everything, and by digest", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const target = await ContentStore.open(join(dir, "pull-all"));
    const r = await pullImage(client, target, repo, image.index.digest);
    assert.equal(r.manifests.length, 3);
    for (const b of image.blobs) assert.ok(await target.has(b.digest));
  });

  test("missing tag, missing blob, unreachable registry: one-line errors naming the reference", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const e = await expectCode(client.resolve(repo, "nope"), "E_MANIFEST_UNKNOWN");
    assert.match(e.message, new RegExp(`${reg.host}/kiln/multi:nope`));
    await expectCode(
      client.getManifest({ registry: reg.host, repository: "kiln/absent" }, "v1"),
      "E_MANIFEST_UNKNOWN",
    );
    const missing = {
      mediaType: "application/octet-stream",
      digest: `sha256:${"0".repeat(64)}`,
      size: 1,
    };
    assert.equal(await client.blobExists(repo, missing.digest), undefined);
    await expectCode(
      (async () => {
        const chunks: unknown[] = [];
        for await (const c of client.fetchBlob(repo, missing)) chunks.push(c);
        return chunks;
      })(),
      "E_BLOB_UNKNOWN",
    );
    const dead = new RegistryClient({
      auth: () => Promise.resolve(undefined),
      retry: { attempts: 2, baseDelayMs: 10 },
    });
    const u = await expectCode(
      dead.resolve({ registry: "127.0.0.1:1", repository: "x" }, "v1"),
      "E_REGISTRY_UNREACHABLE",
    );
    assert.match(u.message, /127\.0\.0\.1:1\/x:v1/);
    dead.close();
  });

  test("blob download streams the bytes of its digest", async () => {
    const repo = { registry: reg.host, repository: "kiln/multi" };
    const layer = image.manifests[0]!.doc.layers[1]!;
    const h = createHash("sha256");
    for await (const c of client.fetchBlob(repo, layer)) h.update(c as Buffer);
    assert.equal(`sha256:${h.digest("hex")}`, layer.digest);
  });
});

describe("htpasswd registry (Basic auth)", () => {
  let reg: RunningRegistry;
  let store: ContentStore;
  let image: BuiltImage;

  before(async () => {
    reg = await startRegistry({ auth: "htpasswd" });
    store = await ContentStore.open(join(dir, "basic"));
    image = await buildIndex(store, platforms.slice(0, 2), "basic");
  });
  after(async () => {
    await reg.stop();
  });

  test("push and pull with the right credentials", async () => {
    const { user, password } = reg.credentials!;
    const client = new RegistryClient({
      auth: () => Promise.resolve({ username: user, password }),
    });
    const repo = { registry: reg.host, repository: "kiln/basic" };
    await pushImage(client, store, image.index, repo, ["v1"]);
    const target = await ContentStore.open(join(dir, "basic-pull"));
    const r = await pullImage(client, target, repo, "v1", {
      platform: { os: "linux", architecture: "arm64" },
    });
    assert.equal(r.manifests[0]!.digest, image.manifests[1]!.desc.digest);
    client.close();
  });

  test("wrong password and no credentials fail with E_REGISTRY_AUTH, never echoing the secret", async () => {
    const repo = { registry: reg.host, repository: "kiln/basic" };
    const secret = "definitely-wrong-pass-123";
    const wrong = new RegistryClient({
      auth: () => Promise.resolve({ username: reg.credentials!.user, password: secret }),
    });
    const e = await expectCode(wrong.resolve(repo, "v1"), "E_REGISTRY_AUTH");
    assert.ok(!`${e.message} ${e.hint ?? ""}`.includes(secret));
    assert.match(e.message, /kiln\/basic:v1/);
    wrong.close();
    const anonymous = new RegistryClient({ auth: () => Promise.resolve(undefined) });
    await expectCode(anonymous.resolve(repo, "v1"), "E_REGISTRY_AUTH");
    anonymous.close();
  });
});
