// COPY --link --chmod: the files land in a layer of their own, made without the stage below
// (so a changed base leaves it byte-identical), with the mode applied to the files only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { kilnOk, removeTree, tempDir, testRegistry, writeContext } from "../fixtures/build-cli.js";

const reg = testRegistry();

interface Json {
  manifests?: { digest: string }[];
  layers?: { digest: string }[];
}
const blob = (layout: string, digest: string): string =>
  join(layout, "blobs", ...digest.split(":"));
const json = async (layout: string, digest: string): Promise<Json> =>
  JSON.parse(await readFile(blob(layout, digest), "utf8")) as Json;

test("COPY --link --chmod keeps --link: a rebased layer with the mode applied", async () => {
  const dir = await tempDir("link");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox:latest\nARG V\nRUN echo $V > /v\nCOPY --link --chmod=640 a.txt /bin/linked.txt\nRUN ls /bin/linked.txt\n`,
      "a.txt": "linked\n",
    });
    const lastLayers: string[] = [];
    for (const v of ["1", "2"]) {
      const layout = join(dir, `oci-${v}`);
      await kilnOk(
        [
          "build",
          "--provenance=false",
          "--build-arg",
          `V=${v}`,
          "-o",
          `type=oci,tar=false,dest=${layout}`,
          ctx,
        ],
        { root: join(dir, "root"), cwd: dir },
      );
      const top = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as Json;
      const manifest = await json(layout, top.manifests![0]!.digest);
      // the RUN after the link sees the merged tree; its layer is empty, the linked one is below
      const layers = manifest.layers!.slice(0, -1);
      lastLayers.push(layers[layers.length - 1]!.digest);
      // the linked layer holds the copy alone, its mode applied
      const listing = execFileSync("tar", ["tvzf", blob(layout, layers.at(-1)!.digest)])
        .toString()
        .trim()
        .split("\n");
      assert.deepEqual(
        listing.map((l) => l.split(/\s+/)).map((f) => [f[0], f.at(-1)]),
        [
          ["drwxr-xr-x", "bin/"],
          ["-rw-r-----", "bin/linked.txt"],
        ],
      );
    }
    assert.equal(lastLayers[0], lastLayers[1], "the linked layer does not depend on the stage");
    const out = join(dir, "out");
    await kilnOk(["build", "--build-arg", "V=1", "-o", `type=local,dest=${out}`, ctx], {
      root: join(dir, "root"),
      cwd: dir,
    });
    assert.equal((await stat(join(out, "bin/linked.txt"))).mode & 0o7777, 0o640);
    // the stage's /bin keeps its mode: the copy's parent does not replace it with 0640
    assert.equal((await stat(join(out, "bin"))).mode & 0o7777, 0o755);
    assert.equal(await readFile(join(out, "v"), "utf8"), "1\n");
  } finally {
    await removeTree(dir);
  }
});
