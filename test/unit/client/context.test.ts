import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTar } from "../../../src/archive/index.js";
import { packUpload } from "../../../src/client/index.js";
import { openLayoutContexts } from "../../../src/engine/images.js";

test("the upload holds the filtered context, the Dockerfile with its rules, named contexts", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-upload-"));
  try {
    const ctx = join(dir, "ctx");
    await mkdir(join(ctx, "src", "gen"), { recursive: true });
    await mkdir(join(ctx, "logs"));
    await writeFile(join(ctx, "Dockerfile"), "FROM scratch\n");
    await writeFile(join(ctx, ".dockerignore"), "logs\n*.tmp\nsrc/gen\n!src/gen/keep.txt\n");
    await writeFile(join(ctx, "a.txt"), "a");
    await writeFile(join(ctx, "b.tmp"), "b");
    await writeFile(join(ctx, "logs", "x.log"), "x");
    await writeFile(join(ctx, "src", "gen", "drop.txt"), "d");
    await writeFile(join(ctx, "src", "gen", "keep.txt"), "k");
    await symlink("a.txt", join(ctx, "link"));
    const named = join(dir, "named");
    await mkdir(named);
    await writeFile(join(named, "n.txt"), "n");

    const names: string[] = [];
    let rules = "";
    const upload = packUpload({
      contextDir: ctx,
      dockerfile: join(ctx, "Dockerfile"),
      namedContexts: { extra: named },
    });
    for await (const { entry, body } of readTar(upload)) {
      names.push(entry.name);
      let text = "";
      for await (const c of body) text += Buffer.from(c as Buffer).toString();
      if (entry.name === "dockerfile/Dockerfile.dockerignore") rules = text;
    }
    assert.deepEqual(names.sort(), [
      "context/",
      "context/.dockerignore",
      "context/Dockerfile",
      "context/a.txt",
      "context/link",
      "context/src/",
      "context/src/gen/keep.txt",
      "dockerfile/",
      "dockerfile/Dockerfile",
      "dockerfile/Dockerfile.dockerignore",
      "named/",
      "named/extra/",
      "named/extra/n.txt",
    ]);
    assert.equal(rules, "logs\n*.tmp\nsrc/gen\n!src/gen/keep.txt\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an oci-layout:// context is uploaded as a layout holding only its image's blobs", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-upload-layout-"));
  try {
    const layout = join(dir, "layout");
    await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
    const put = async (bytes: string, mediaType: string) => {
      const hex = createHash("sha256").update(bytes).digest("hex");
      await writeFile(join(layout, "blobs", "sha256", hex), bytes);
      return { mediaType, digest: `sha256:${hex}`, size: Buffer.byteLength(bytes) };
    };
    const image = async (tag: string) => {
      const config = await put(`{"tag":"${tag}"}`, "application/vnd.oci.image.config.v1+json");
      const layer = await put(`layer of ${tag}`, "application/vnd.oci.image.layer.v1.tar");
      return put(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config,
          layers: [layer],
        }),
        "application/vnd.oci.image.manifest.v1+json",
      );
    };
    const a = await image("a");
    const index = await put(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{ ...a, platform: { os: "linux", architecture: "amd64" } }],
      }),
      "application/vnd.oci.image.index.v1+json",
    );
    const b = await image("b");
    const ref = (d: object, name: string) => ({
      ...d,
      annotations: { "org.opencontainers.image.ref.name": name },
    });
    await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(
      join(layout, "index.json"),
      JSON.stringify({ schemaVersion: 2, manifests: [ref(index, "a"), ref(b, "b")] }),
    );
    const ctx = join(dir, "ctx");
    await mkdir(ctx);
    await writeFile(join(ctx, "Dockerfile"), "FROM base\n");

    const namedContexts = { base: `oci-layout://${layout}:a` };
    const upload = packUpload({
      contextDir: ctx,
      dockerfile: join(ctx, "Dockerfile"),
      namedContexts,
      layouts: await openLayoutContexts(namedContexts),
    });
    const names: string[] = [];
    for await (const { entry, body } of readTar(upload)) {
      names.push(entry.name);
      // every member is read through: the tar stream advances only then
      let size = 0;
      for await (const c of body) size += (c as Buffer).length;
      assert.equal(size, entry.size, entry.name);
    }
    const blob = (d: { digest: string }) => `named/base/blobs/sha256/${d.digest.slice(7)}`;
    const manifestA = JSON.parse(
      await readFile(join(layout, "blobs", "sha256", a.digest.slice(7)), "utf8"),
    ) as { config: { digest: string }; layers: { digest: string }[] };
    assert.deepEqual(
      names.filter((n) => n.startsWith("named/")).sort(),
      [
        "named/",
        "named/base/",
        "named/base/blobs/",
        "named/base/blobs/sha256/",
        blob(index),
        blob(a),
        blob(manifestA.config),
        blob(manifestA.layers[0]!),
        "named/base/index.json",
        "named/base/oci-layout",
      ].sort(),
    );
    // image b's manifest is not sent
    assert.ok(!names.includes(blob(b)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
