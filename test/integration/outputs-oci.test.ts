// `--output type=oci` and `type=docker` from the real CLI, read back by independent tools:
// skopeo (oci-archive:, oci:, docker-archive:), umoci unpack, tar, and the image-spec schemas.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../fixtures/exec.js";
import {
  kiln,
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { checkLayout } from "../unit/exporter/layout-check.js";

const reg = testRegistry();
const files = {
  Dockerfile: `FROM ${reg}/base/busybox:latest
COPY hello.txt /app/hello.txt
RUN mkdir -p /data && uname -m > /data/arch
`,
  "hello.txt": "hello\n",
};

async function withContext(fn: (dir: string, ctx: string) => Promise<void>): Promise<void> {
  const dir = await tempDir("outputs-oci");
  try {
    const ctx = await writeContext(join(dir, "ctx"), files);
    await fn(dir, ctx);
  } finally {
    await removeTree(dir);
  }
}

test("type=oci tarball: two platforms under one index, named, readable by skopeo", async () => {
  await withContext(async (dir, ctx) => {
    const tarball = join(dir, "image.tar");
    const r = await kilnOk(
      [
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "example.com/outputs/oci:v1",
        "-o",
        `type=oci,dest=${tarball}`,
        "--metadata-file",
        join(dir, "meta.json"),
        ctx,
      ],
      { root: join(dir, "root"), cwd: dir },
    );
    assert.equal(r.code, 0);
    const entries = (await run("tar", ["-tf", tarball])).split("\n").filter(Boolean);
    assert.ok(entries.includes("oci-layout") && entries.includes("index.json"), entries.join(" "));
    assert.ok(!entries.includes("manifest.json"), "an OCI tarball has no docker manifest.json");

    const layout = join(dir, "layout");
    await mkdir(layout);
    await run("tar", ["-xf", tarball, "-C", layout]);
    const { index, documents, validated } = await checkLayout(layout);
    assert.ok(validated >= 6, `only ${validated} documents validated`);
    assert.equal(index.manifests.length, 1);
    const root = index.manifests[0]!;
    assert.equal(root.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.equal(root.annotations?.["org.opencontainers.image.ref.name"], "v1");
    assert.equal(root.annotations?.["io.containerd.image.name"], "example.com/outputs/oci:v1");
    const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as Record<
      string,
      unknown
    >;
    assert.equal(meta["containerimage.digest"], root.digest);
    // the images, then the default provenance's attestation manifests (BuildKit's order)
    const children = (
      documents.get(root.digest)!.manifests as { platform: { architecture: string } }[]
    ).map((m) => m.platform.architecture);
    assert.deepEqual(children, ["amd64", "arm64", "unknown", "unknown"]);

    const raw = JSON.parse(await run("skopeo", ["inspect", "--raw", `oci-archive:${tarball}`])) as {
      manifests: unknown[];
    };
    assert.equal(raw.manifests.length, 4);
    const arm = JSON.parse(
      await run("skopeo", ["--override-arch", "arm64", "inspect", `oci-archive:${tarball}`]),
    ) as { Architecture: string; Layers: string[] };
    assert.equal(arm.Architecture, "arm64");
    assert.equal(arm.Layers.length, 3);
    // a full copy of every platform verifies every blob on the way
    await run("skopeo", [
      "copy",
      "--all",
      `oci-archive:${tarball}`,
      `oci:${join(dir, "copied")}:v1`,
    ]);
  });
});

test("type=oci,tar=false: a layout directory umoci unpacks to the built files", async () => {
  await withContext(async (dir, ctx) => {
    const layout = join(dir, "layout");
    await kilnOk(
      [
        "build",
        "--platform",
        "linux/arm64",
        "-t",
        "outputs/dir:one",
        "-o",
        `type=oci,tar=false,dest=${layout}`,
        // one manifest without an index (provenance would add one)
        "--provenance=false",
        ctx,
      ],
      { root: join(dir, "root"), cwd: dir },
    );
    const { index } = await checkLayout(layout);
    assert.equal(index.manifests[0]!.mediaType, "application/vnd.oci.image.manifest.v1+json");
    const bundle = join(dir, "bundle");
    await run("umoci", ["unpack", "--rootless", "--image", `${layout}:one`, bundle]);
    assert.equal(await readFile(join(bundle, "rootfs", "data", "arch"), "utf8"), "aarch64\n");
    assert.equal(await readFile(join(bundle, "rootfs", "app", "hello.txt"), "utf8"), "hello\n");
  });
});

test("type=docker: a docker-load tarball with manifest.json (and an OCI layout inside)", async () => {
  await withContext(async (dir, ctx) => {
    const tarball = join(dir, "docker.tar");
    await kilnOk(
      [
        "build",
        "--platform",
        "linux/amd64",
        "-t",
        "outputs/docker:1",
        "-o",
        `type=docker,dest=${tarball}`,
        ctx,
      ],
      { root: join(dir, "root"), cwd: dir },
    );
    const entries = new Set((await run("tar", ["-tf", tarball])).split("\n").filter(Boolean));
    const manifest = JSON.parse(await run("tar", ["-xOf", tarball, "manifest.json"])) as {
      Config: string;
      RepoTags: string[];
      Layers: string[];
    }[];
    assert.equal(manifest.length, 1);
    assert.deepEqual(manifest[0]!.RepoTags, ["outputs/docker:1"]);
    assert.equal(manifest[0]!.Layers.length, 3);
    for (const p of [manifest[0]!.Config, ...manifest[0]!.Layers]) assert.ok(entries.has(p), p);

    const layout = join(dir, "layout");
    await mkdir(layout);
    await run("tar", ["-xf", tarball, "-C", layout]);
    await checkLayout(layout);
    const inspected = JSON.parse(await run("skopeo", ["inspect", `docker-archive:${tarball}`])) as {
      Architecture: string;
      RepoTags: string[];
    };
    assert.equal(inspected.Architecture, "amd64");
  });
});

test("type=docker with two platforms fails before building, naming --platform and type=oci", async () => {
  await withContext(async (dir, ctx) => {
    const r = await kiln(
      [
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        `type=docker,dest=${join(dir, "d.tar")}`,
        ctx,
      ],
      { root: join(dir, "root"), cwd: dir },
    );
    assert.equal(r.code, 1);
    const text = r.messages.join("\n");
    assert.match(text, /docker load/);
    assert.match(text, /--platform/);
    assert.match(text, /type=oci/);
    assert.equal(r.events.filter((e) => e.type === "vertex").length, 0, "nothing was built");
  });
});
