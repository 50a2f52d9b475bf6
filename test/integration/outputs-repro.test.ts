// Reproducible builds: with SOURCE_DATE_EPOCH (from the environment or as a build arg), two
// builds of a two-platform Dockerfile with RUN and COPY from fresh state directories, at
// different times, give the same index digest, byte for byte the same OCI tarball, and
// timestamps at the epoch; without it the same build gives another digest.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { run } from "../fixtures/exec.js";
import { kilnOk, removeTree, tempDir, testRegistry, writeContext } from "../fixtures/build-cli.js";
import { checkLayout } from "../unit/exporter/layout-check.js";

const reg = testRegistry();
let dir = "";
let ctx = "";

before(async () => {
  dir = await tempDir("outputs-repro");
  ctx = await writeContext(join(dir, "ctx"), {
    // RUN touches directories that exist in the base (/etc, /) and makes new ones; COPY
    // creates a directory; every file gets the build's wall-clock time unless clamped
    Dockerfile: `FROM ${reg}/base/busybox:latest
COPY hello.txt /app/hello.txt
RUN mkdir -p /data/nested && uname -m > /data/arch && echo extra >> /etc/motd && touch /new-at-root
`,
    "hello.txt": "hello\n",
  });
});
after(() => removeTree(dir));

async function buildTar(
  name: string,
  args: string[],
  env?: Record<string, string>,
): Promise<string> {
  const tarball = join(dir, `${name}.tar`);
  const r = await kilnOk(
    [
      "build",
      "-q",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=oci,dest=${tarball}`,
      // provenance records when the build ran (as BuildKit's does): reproducible digests need it off
      "--provenance=false",
      ...args,
      ctx,
    ],
    { root: join(dir, `root-${name}`), cwd: dir, env },
  );
  return r.stdout.trim();
}

test("SOURCE_DATE_EPOCH=0: two from-scratch builds give the same index digest", async () => {
  const a = await buildTar("a", [], { SOURCE_DATE_EPOCH: "0" });
  await sleep(1100); // whole seconds apart, so unclamped times would differ
  const b = await buildTar("b", ["--build-arg", "SOURCE_DATE_EPOCH=0"]);
  assert.match(a, /^sha256:[0-9a-f]{64}$/);
  assert.equal(a, b);
  assert.deepEqual(await readFile(join(dir, "a.tar")), await readFile(join(dir, "b.tar")));

  const layout = join(dir, "layout-a");
  await mkdir(layout);
  await run("tar", ["-xf", join(dir, "a.tar"), "-C", layout]);
  const { documents } = await checkLayout(layout);
  let configs = 0;
  for (const doc of documents.values()) {
    if (!("rootfs" in doc)) continue;
    configs++;
    assert.equal(doc.created, "1970-01-01T00:00:00Z");
    const history = doc.history as { created?: string; created_by?: string }[];
    const built = history.filter((h) => /COPY|RUN/.test(h.created_by ?? ""));
    assert.equal(built.length, 2);
    for (const h of built) assert.equal(h.created, "1970-01-01T00:00:00Z");
  }
  assert.equal(configs, 2);

  // every entry of every built layer carries the epoch
  for (const doc of documents.values()) {
    if (!("layers" in doc)) continue;
    for (const layer of (doc.layers as { digest: string }[]).slice(1)) {
      const blob = join(layout, "blobs", "sha256", layer.digest.slice(7));
      const listing = await run("tar", ["--full-time", "-tvzf", blob]);
      for (const line of listing.trim().split("\n"))
        assert.match(line, /1970-01-01 00:00:00/, `${layer.digest}: ${line}`);
    }
  }
});

test("without SOURCE_DATE_EPOCH the same build is not reproducible (the check above can fail)", async () => {
  const a = await buildTar("a", [], { SOURCE_DATE_EPOCH: "0" });
  const unclamped = await buildTar("a", [], { SOURCE_DATE_EPOCH: "" });
  assert.notEqual(unclamped, a);
});
