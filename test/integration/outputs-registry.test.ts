// `--push` / `--output type=registry|image` from the real CLI, checked with skopeo against the
// registry and with the image-spec schemas; `kiln images` and `kiln push` for builds kept in
// kiln's store. One state directory for the file: after the first build, steps come from cache.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../fixtures/exec.js";
import {
  collect,
  kilnOk,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { assertSchema, type Descriptor } from "../unit/exporter/layout-check.js";

const reg = testRegistry();
let dir = "";
let ctx = "";
const opts = (): { root: string; cwd: string } => ({ root: join(dir, "root"), cwd: dir });

before(async () => {
  dir = await tempDir("outputs-registry");
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox:latest
COPY hello.txt /app/hello.txt
RUN mkdir -p /data && uname -m > /data/arch
`,
    "hello.txt": "hello\n",
  });
});
after(() => removeTree(dir));

/** skopeo's JSON output; global options (e.g. --override-arch) go before the command. */
const skopeo = async (...args: string[]): Promise<Record<string, unknown>> => {
  const at = args.findIndex((a) => a === "inspect" || a === "list-tags");
  const argv = [...args.slice(0, at + 1), "--tls-verify=false", ...args.slice(at + 1)];
  return JSON.parse(await run("skopeo", argv)) as Record<string, unknown>;
};

const isAttestation = (m: Descriptor): boolean =>
  m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest";
/** The image manifests of an index (without the default provenance's attestation manifests). */
const imagesOf = (index: Record<string, unknown>): Descriptor[] =>
  (index.manifests as Descriptor[]).filter((m) => !isAttestation(m));

/** Fetches the index and everything under it and validates each document. */
async function checkPushed(repo: string, ref: string): Promise<Record<string, unknown>> {
  const index = await skopeo("inspect", "--raw", `docker://${repo}${ref}`);
  assertSchema("index", index, `index of ${repo}${ref}`);
  for (const m of index.manifests as Descriptor[]) {
    const manifest = await skopeo("inspect", "--raw", `docker://${repo}@${m.digest}`);
    assertSchema("manifest", manifest, `manifest ${m.digest}`);
    // the default provenance's attestation manifests (checked in attestations.test.ts)
    if (isAttestation(m)) continue;
    const config = await skopeo("inspect", "--config", "--raw", `docker://${repo}@${m.digest}`);
    assertSchema("config", config, `config of ${m.digest}`);
    assert.equal((config as { architecture: string }).architecture, m.platform?.architecture);
  }
  return index;
}

test("--push: a two-platform index, children by digest, tag on the index; metadata names it", async () => {
  const repo = `${reg}/outputs/push`;
  const metaFile = join(dir, "meta.json");
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-t",
      `${repo}:1`,
      "--push",
      "--annotation",
      "index:org.opencontainers.image.title=kiln outputs test",
      "--annotation",
      "org.example.per-manifest=yes",
      "--metadata-file",
      metaFile,
      ctx,
    ],
    opts(),
  );
  const index = await checkPushed(repo, ":1");
  assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.deepEqual(
    imagesOf(index).map((m) => m.platform?.architecture),
    ["amd64", "arm64"],
  );
  assert.equal((index.manifests as Descriptor[]).filter(isAttestation).length, 2);
  const meta = JSON.parse(await readFile(metaFile, "utf8")) as Record<string, unknown>;
  const digest = (
    await run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--format",
      "{{.Digest}}",
      `docker://${repo}:1`,
    ])
  ).trim();
  assert.equal(meta["containerimage.digest"], digest);
  assert.deepEqual(meta["containerimage.descriptor"], {
    mediaType: "application/vnd.oci.image.index.v1+json",
    digest,
    size: (meta["containerimage.descriptor"] as { size: number }).size,
  });
  assert.equal(meta["image.name"], `${repo}:1`);
  assert.match(meta["buildx.build.ref"] as string, /^kiln\/[^/]+\/[0-9a-z]{25}$/);
  assert.deepEqual(index.annotations, {
    "org.opencontainers.image.title": "kiln outputs test",
  });
  for (const m of imagesOf(index)) {
    const manifest = await skopeo("inspect", "--raw", `docker://${repo}@${m.digest}`);
    assert.deepEqual(manifest.annotations, { "org.example.per-manifest": "yes" });
  }
});

test("oci-mediatypes=false: a Docker manifest list of Docker v2 schema 2 manifests", async () => {
  const repo = `${reg}/outputs/dockertypes`;
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=registry,name=${repo}:1,oci-mediatypes=false`,
      ctx,
    ],
    opts(),
  );
  const list = await skopeo("inspect", "--raw", `docker://${repo}:1`);
  assert.equal(list.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
  for (const m of list.manifests as Descriptor[]) {
    assert.equal(m.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
    const manifest = (await skopeo("inspect", "--raw", `docker://${repo}@${m.digest}`)) as {
      config: Descriptor;
      layers: Descriptor[];
    };
    assert.equal(manifest.config.mediaType, "application/vnd.docker.container.image.v1+json");
    for (const l of manifest.layers)
      assert.equal(l.mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
  }
  const arm = await skopeo("--override-arch", "arm64", "inspect", `docker://${repo}:1`);
  assert.equal(arm.Architecture, "arm64");
});

test("compression=zstd: built layers are zstd (all of them with force-compression); skopeo copies it", async () => {
  const repo = `${reg}/outputs/zstd`;
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=registry,name=${repo}:1,compression=zstd,compression-level=5,force-compression=true`,
      ctx,
    ],
    opts(),
  );
  const index = await checkPushed(repo, ":1");
  for (const m of imagesOf(index)) {
    const manifest = (await skopeo("inspect", "--raw", `docker://${repo}@${m.digest}`)) as {
      layers: Descriptor[];
    };
    const types = manifest.layers.map((l) => l.mediaType);
    const zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    assert.deepEqual(types.slice(1), [zstd, zstd]);
    assert.equal(types[0], zstd, "force-compression recompresses the base layer");
  }
  await run("skopeo", [
    "copy",
    "--all",
    "--src-tls-verify=false",
    `docker://${repo}:1`,
    `oci:${join(dir, "zstd-copy")}:1`,
  ]);
});

test("push-by-digest: no tag is pushed, the image is there by digest", async () => {
  const repo = `${reg}/outputs/bydigest`;
  const r = await kilnOk(
    [
      "build",
      "-q",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=image,name=${repo}:nottagged,push=true,push-by-digest=true,name-canonical=true`,
      ctx,
    ],
    opts(),
  );
  const digest = r.stdout.trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  await checkPushed(repo, `@${digest}`);
  const tags = await skopeo("list-tags", `docker://${repo}`).catch(() => ({ Tags: [] }));
  assert.ok(!(tags.Tags as string[]).includes("nottagged"), JSON.stringify(tags));
});

test("no output: the image stays in kiln's store; kiln images lists it and kiln push sends it", async () => {
  const name = `${reg}/outputs/kept:1`;
  const built = await kilnOk(
    ["build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", name, ctx],
    opts(),
  );
  const digest = built.stdout.trim();
  assert.match(built.messages.join("\n"), /kept in kiln's store as .*outputs\/kept:1/);

  const listed = await collect(await startKiln(["images", "--json"], opts()));
  assert.equal(listed.code, 0, listed.stderr);
  const images = JSON.parse(listed.stdout) as {
    name?: string;
    digest: string;
    platforms: string[];
    size: number;
  }[];
  const mine = images.find((i) => i.name === name);
  assert.ok(mine, listed.stdout);
  assert.equal(mine.digest, digest);
  assert.deepEqual(mine.platforms, ["linux/amd64", "linux/arm64"]);
  assert.ok(mine.size > 1000);

  const table = await collect(await startKiln(["images"], opts()));
  assert.match(table.stdout, /^NAME\s+DIGEST\s+PLATFORMS\s+SIZE/);
  assert.match(
    table.stdout,
    new RegExp(`${name.replace(/[.]/g, "\\.")}\\s+${digest}\\s+linux/amd64,linux/arm64`),
  );

  const pushed = await collect(await startKiln(["push", name], opts()));
  assert.equal(pushed.code, 0, pushed.stderr);
  const index = await checkPushed(`${reg}/outputs/kept`, ":1");
  assert.equal(imagesOf(index).length, 2);

  const missing = await collect(await startKiln(["push", `${reg}/outputs/never:1`], opts()));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no image named .*never:1 in kiln's store/);
});
