// Interoperability with skopeo: what kiln pushes skopeo reads and copies; what skopeo pushes
// (including Docker schema 2 manifest lists) kiln reads; kiln's content store is an OCI layout.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ContentStore } from "../../src/content/index.js";
import { MediaType, parseIndex, parseManifest } from "../../src/oci/index.js";
import { RegistryClient, pullImage, pushImage } from "../../src/registry/index.js";
import { run } from "../fixtures/exec.js";
import { startRegistry, type RunningRegistry } from "../fixtures/registry.js";
import { buildIndex, type BuiltImage } from "../fixtures/registry-images.js";
import { schemaErrors } from "../unit/oci/oci-schema.js";

let dir: string;
let reg: RunningRegistry;
let store: ContentStore;
let image: BuiltImage;
let client: RegistryClient;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-registry-interop-"));
  reg = await startRegistry({ auth: "none" });
  store = await ContentStore.open(join(dir, "store"));
  image = await buildIndex(
    store,
    [
      { os: "linux", architecture: "amd64" },
      { os: "linux", architecture: "arm64" },
      { os: "linux", architecture: "arm", variant: "v7" },
    ],
    "interop",
  );
  client = new RegistryClient({ auth: () => Promise.resolve(undefined) });
  await pushImage(client, store, image.index, { registry: reg.host, repository: "kiln/interop" }, [
    "v1",
  ]);
});
after(async () => {
  client.close();
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args]);

test("skopeo inspect --raw returns exactly the bytes kiln pushed", async () => {
  const raw = await skopeo(
    "inspect",
    "--raw",
    "--tls-verify=false",
    `docker://${reg.host}/kiln/interop:v1`,
  );
  assert.equal(raw, (await store.readBytes(image.index.digest)).toString("utf8"));
  const inspected = JSON.parse(
    await skopeo(
      "inspect",
      "--tls-verify=false",
      "--override-arch",
      "arm",
      "--override-variant",
      "v7",
      `docker://${reg.host}/kiln/interop:v1`,
    ),
  ) as { Digest: string; Architecture: string; Layers: string[] };
  assert.equal(inspected.Digest, image.index.digest);
  assert.equal(inspected.Architecture, "arm");
  assert.deepEqual(
    inspected.Layers,
    image.manifests[2]!.doc.layers.map((l) => l.digest),
  );
});

test("skopeo copies what kiln pushed into an oci: layout, which kiln's store reads and verifies", async () => {
  const layout = join(dir, "skopeo-layout");
  await skopeo(
    "copy",
    "--all",
    "--src-tls-verify=false",
    `docker://${reg.host}/kiln/interop:v1`,
    `oci:${layout}:v1`,
  );
  const copied = await ContentStore.open(layout);
  const top = await copied.readIndex();
  assert.equal(top.manifests[0]!.annotations?.["org.opencontainers.image.ref.name"], "v1");
  // skopeo 1.9 gzips uncompressed layers for oci: destinations (so manifests change); configs
  // and platforms stay, and every blob it wrote reads back verified through kiln's store.
  const index = parseIndex(await copied.readBytes(top.manifests[0]!.digest));
  assert.deepEqual(
    index.manifests.map((m) => m.platform),
    image.indexDoc.manifests.map((m) => m.platform),
  );
  for (const [i, d] of index.manifests.entries()) {
    const m = parseManifest(await copied.readBytes(d.digest), d.mediaType);
    assert.equal(m.config.digest, image.manifests[i]!.doc.config.digest);
    assert.equal(schemaErrors("manifest", m), "");
    for (const b of [m.config, ...m.layers])
      assert.equal((await copied.readBytes(b.digest)).byteLength, b.size);
  }
});

test("skopeo pushes from kiln's content store (an OCI layout); kiln pulls it back", async () => {
  await store.addToIndex(image.index, "v1");
  assert.equal(schemaErrors("index", await store.readIndex()), "");
  await skopeo(
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${store.root}:v1`,
    `docker://${reg.host}/skopeo/app:v1`,
  );
  const repo = { registry: reg.host, repository: "skopeo/app" };
  const desc = await client.resolve(repo, "v1");
  assert.equal(desc.digest, image.index.digest, "skopeo kept the index unchanged");
  const target = await ContentStore.open(join(dir, "from-skopeo"));
  const r = await pullImage(client, target, repo, "v1", {
    platform: { os: "linux", architecture: "arm64" },
  });
  assert.equal(r.manifests[0]!.digest, image.manifests[1]!.desc.digest);
});

test("kiln reads a Docker schema 2 manifest list and manifests written by skopeo", async () => {
  await skopeo(
    "copy",
    "--all",
    "--format",
    "v2s2",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
    `docker://${reg.host}/kiln/interop:v1`,
    `docker://${reg.host}/skopeo/docker:v1`,
  );
  const repo = { registry: reg.host, repository: "skopeo/docker" };
  const got = await client.getManifest(repo, "v1");
  assert.equal(got.descriptor.mediaType, MediaType.dockerManifestList);
  const list = parseIndex(got.bytes, got.descriptor.mediaType);
  assert.equal(list.manifests.length, 3);
  const target = await ContentStore.open(join(dir, "docker-pull"));
  const r = await pullImage(client, target, repo, "v1", {
    platform: { os: "linux", architecture: "arm", variant: "v7" },
  });
  const m = parseManifest(await target.readBytes(r.manifests[0]!.digest), MediaType.dockerManifest);
  assert.equal(m.mediaType, MediaType.dockerManifest);
  assert.ok(m.layers.every((l) => l.mediaType.startsWith("application/vnd.docker.image.rootfs.")));
  for (const l of m.layers) assert.ok(await target.has(l.digest));
});
