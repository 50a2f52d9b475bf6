// A RUN under real runc that creates, modifies and deletes files (a base directory removed
// and recreated → opaque), hardlinks, symlinks, a setuid file and a fifo: the layer kiln
// makes, applied by an independent tool (umoci), gives exactly the expected tree (issue 5).
// Also: every bundled example builds for three platforms (issue 8).
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readFile, readdir, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  unpackPlatform,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
const repoRoot = join(import.meta.dirname, "..", "..");

const dockerfile = `FROM ${reg}/base/busybox
RUN mkdir -p /data/keep /data/gone /data/redo && echo a > /data/keep/a && echo x > /data/gone/x \\
 && echo old > /data/redo/old && echo base > /etc/motd
RUN rm -rf /data/gone /data/redo && mkdir /data/redo && echo new > /data/redo/new \\
 && echo changed > /etc/motd && rm /bin/vi \\
 && echo hl > /data/keep/h1 && ln /data/keep/h1 /data/keep/h2 \\
 && ln -s ../keep/a /data/keep/rel && ln -s /etc/motd /data/abs \\
 && echo s > /data/suid && chown 1:2 /data/suid && chmod 4755 /data/suid \\
 && mkfifo /data/fifo && chmod 1777 /data/keep
`;

/** The tree the Dockerfile above gives, checked in an image unpacked by umoci. */
async function assertExpectedTree(rootfs: string): Promise<void> {
  const r = (p: string): string => join(rootfs, p);
  // deletions: a whole directory, a base file; a directory deleted and recreated holds only the new file
  await assert.rejects(lstat(r("data/gone")));
  await assert.rejects(lstat(r("bin/vi")));
  assert.deepEqual(await readdir(r("data/redo")), ["new"]);
  assert.equal(await readFile(r("data/redo/new"), "utf8"), "new\n");
  assert.equal(await readFile(r("etc/motd"), "utf8"), "changed\n");
  assert.equal(await readFile(r("data/keep/a"), "utf8"), "a\n");
  // hardlinks stay one inode; symlinks keep their targets
  const [h1, h2] = await Promise.all([stat(r("data/keep/h1")), stat(r("data/keep/h2"))]);
  assert.equal(h1.ino, h2.ino);
  assert.equal(await readlink(r("data/keep/rel")), "../keep/a");
  assert.equal(await readlink(r("data/abs")), "/etc/motd");
  // modes and owners, setuid and sticky bits
  const suid = await stat(r("data/suid"));
  assert.equal(suid.mode & 0o7777, 0o4755);
  assert.deepEqual([suid.uid, suid.gid], [1, 2]);
  assert.equal((await stat(r("data/keep"))).mode & 0o7777, 0o1777);
  assert.ok((await lstat(r("data/fifo"))).isFIFO());
  // the busybox binary the delete spared is untouched
  assert.ok((await stat(r("bin/busybox"))).isFile());
}

test("a RUN's changes, applied by umoci, give exactly the expected tree", async () => {
  const dir = await tempDir("layer-tree");
  try {
    const ctx = await writeContext(join(dir, "ctx"), { Dockerfile: dockerfile });
    const out = join(dir, "oci");
    await kilnOk(
      ["build", "--platform", "linux/amd64", "-o", `type=oci,dest=${out},tar=false`, ctx],
      {
        root: join(dir, "root"),
        cwd: dir,
      },
    );
    await assertExpectedTree(
      await unpackPlatform(`oci:${out}`, { architecture: "amd64" }, dir, join(dir, "bundle")),
    );
  } finally {
    await removeTree(dir);
  }
});

/** Entry names of one layer blob of the only manifest in an OCI layout, as GNU tar lists them. */
async function layerListing(layout: string, index: number): Promise<string[]> {
  const blob = (d: string): string => join(layout, "blobs", "sha256", d.slice("sha256:".length));
  const idx = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(await readFile(blob(idx.manifests[0]!.digest), "utf8")) as {
    layers: { digest: string }[];
  };
  const names = await run("tar", ["-tzf", blob(manifest.layers[index]!.digest)]);
  return names.split("\n").filter(Boolean);
}

test("the copy snapshot driver (KILN_SNAPSHOT_DRIVER=copy): layers hold only changes, deletions as whiteouts", async () => {
  const dir = await tempDir("layer-tree-copy");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `${dockerfile}COPY --link linked.txt /linked/\nRUN test -f /linked/linked.txt && test -f /data/keep/a\n`,
      "linked.txt": "linked\n",
    });
    const out = join(dir, "oci");
    const root = join(dir, "root");
    // one image manifest in the layout (no provenance index around it)
    await kilnOk(
      [
        "build",
        "--provenance=false",
        "--platform",
        "linux/amd64",
        "-o",
        `type=oci,dest=${out},tar=false`,
        ctx,
      ],
      { root, cwd: dir, env: { KILN_SNAPSHOT_DRIVER: "copy" } },
    );
    assert.equal((await readFile(join(root, "snapshots", "driver"), "utf8")).trim(), "copy");
    const rootfs = await unpackPlatform(
      `oci:${out}`,
      { architecture: "amd64" },
      dir,
      join(dir, "bundle"),
    );
    await assertExpectedTree(rootfs);
    assert.equal(await readFile(join(rootfs, "linked/linked.txt"), "utf8"), "linked\n");
    // the second RUN's layer: its deletions as whiteouts, nothing it left alone
    const run2 = await layerListing(out, 2);
    for (const name of [
      "bin/.wh.vi",
      "data/.wh.gone",
      "data/redo/.wh.old",
      "data/redo/new",
      "etc/motd",
    ])
      assert.ok(run2.includes(name), `${name} missing from ${run2.join(" ")}`);
    for (const name of ["bin/busybox", "data/keep/a", "bin/sh"])
      assert.ok(!run2.includes(name), `unchanged ${name} in ${run2.join(" ")}`);
    // COPY --link: a layer of its own files only, and the RUN after it sees the whole chain
    assert.deepEqual(await layerListing(out, 3), ["linked/", "linked/linked.txt"]);
  } finally {
    await removeTree(dir);
  }
});

test("every bundled example builds for linux/amd64, linux/arm64 and linux/arm/v7", async () => {
  const dir = await tempDir("examples");
  try {
    for (const name of ["hello", "cross-compile", "dockerignore"]) {
      const out = join(dir, name);
      await kilnOk(
        [
          "build",
          "--platform",
          "linux/amd64,linux/arm64,linux/arm/v7",
          "--build-arg",
          `BASE=${reg}/base/busybox:latest`,
          "-o",
          `type=oci,dest=${out},tar=false`,
          join(repoRoot, "examples", name),
        ],
        { root: join(dir, "root"), cwd: dir },
      );
      const index = JSON.parse(await readFile(join(out, "index.json"), "utf8")) as {
        manifests: { digest: string }[];
      };
      const top = JSON.parse(
        await readFile(join(out, "blobs", "sha256", index.manifests[0]!.digest.slice(7)), "utf8"),
      ) as {
        manifests: {
          platform: { architecture: string; variant?: string };
          annotations?: Record<string, string>;
        }[];
      };
      assert.deepEqual(
        top.manifests
          .filter((m) => m.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest")
          .map(
            (m) => m.platform.architecture + (m.platform.variant ? `/${m.platform.variant}` : ""),
          ),
        ["amd64", "arm64", "arm/v7"],
        name,
      );
    }
    // the .dockerignore example never ships its secrets or logs, but keeps the re-included file
    const rootfs = await unpackPlatform(
      `oci:${join(dir, "dockerignore")}`,
      { architecture: "arm64" },
      dir,
      join(dir, "bundle-ignore"),
    );
    const files = (await readFile(join(rootfs, "app-files.txt"), "utf8")).trim().split("\n");
    assert.ok(files.includes("/app/keep.log"), files.join(" "));
    assert.ok(files.includes("/app/src/main.sh"));
    assert.ok(!files.some((f) => /secrets|debug\.log|build\//.test(f)), files.join(" "));
    // the cross-compiled program runs on its platform and says where it was built
    const cc = await unpackPlatform(
      `oci:${join(dir, "cross-compile")}`,
      { architecture: "arm", variant: "v7" },
      dir,
      join(dir, "bundle-cc"),
    );
    assert.match(
      await readFile(join(cc, "usr/share/app/self-test.txt"), "utf8"),
      /^app for linux\/arm\/v7, cross-built on x86_64, now running on armv7l\n$/,
    );
  } finally {
    await removeTree(dir);
  }
});
