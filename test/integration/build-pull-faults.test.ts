// A base layer is unpacked while it downloads: a download that turns out bad (a corrupt body, a
// cut connection) fails the build with the reason and leaves nothing unpacked behind, so the
// next build fetches and unpacks the layer again.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startFaultProxy, type FaultProxy } from "../fixtures/registry-proxy.js";
import {
  kiln,
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

let dir: string;
let proxy: FaultProxy;
let ctx: string;
/** the amd64 busybox layer's blob path on the registry */
let layerPath: RegExp;

before(async () => {
  dir = await tempDir("pull-faults");
  proxy = await startFaultProxy(testRegistry());
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${proxy.host}/base/busybox\nRUN test -x /bin/busybox && echo ok > /ok\n`,
  });
  const layers = await amd64Layers(testRegistry(), "base/busybox:latest");
  assert.equal(layers.length, 1);
  layerPath = new RegExp(`/blobs/${layers[0]!}$`);
});

/** The layer digests of the linux/amd64 image of `repo:tag` (an index) on `registry`. */
async function amd64Layers(registry: string, repoTag: string): Promise<string[]> {
  const index = JSON.parse(
    await run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--raw",
      `docker://${registry}/${repoTag}`,
    ]),
  ) as { manifests: { digest: string; platform: { architecture: string } }[] };
  const amd64 = index.manifests.find((m) => m.platform.architecture === "amd64")!;
  const repo = repoTag.slice(0, repoTag.lastIndexOf(":"));
  const manifest = JSON.parse(
    await run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--raw",
      `docker://${registry}/${repo}@${amd64.digest}`,
    ]),
  ) as { layers: { digest: string }[] };
  return manifest.layers.map((l) => l.digest);
}

after(async () => {
  await proxy.stop();
  await removeTree(dir);
});

const layerFetches = () =>
  proxy.requests.filter((r) => r.method === "GET" && layerPath.test(r.path)).length;

test("a base layer download with a corrupt body fails the build; the next build unpacks it afresh", async () => {
  const root = join(dir, "root-corrupt");
  proxy.inject({ method: "GET", path: layerPath, fault: { kind: "corrupt" }, times: 1 });
  const failed = await kiln(
    ["build", "--platform", "linux/amd64", "-o", "type=tar,dest=/dev/null", ctx],
    { root, cwd: dir },
  );
  assert.notEqual(failed.code, 0, failed.stderr);
  const said = failed.messages.join("\n");
  assert.match(said, /sha256:[0-9a-f]{64}/, failed.stderr);
  assert.match(said, /hint: /, failed.stderr);
  assert.doesNotMatch(failed.stderr, /\n\s+at /, "no stack trace");

  const before = layerFetches();
  await buildToDir(root);
  assert.equal(layerFetches(), before + 1, "the layer is fetched again");
});

test("a base layer download cut half way is resumed, and what was unpacked meanwhile is whole", async () => {
  const root = join(dir, "root-cut");
  proxy.inject({
    method: "GET",
    path: layerPath,
    fault: { kind: "reset-after", bytes: 64 * 1024 },
    times: 1,
  });
  const before = layerFetches();
  await buildToDir(root);
  assert.equal(layerFetches(), before + 2, "one cut request, one that resumed it");
});

test("the layers of one image download and unpack at once, each committed above its parent", async () => {
  // busybox and two layers of ~9 MB gzipped: each download lasts while its layer unpacks
  const layered = await writeContext(join(dir, "layered"), {
    Dockerfile: `FROM ${testRegistry()}/base/busybox\nCOPY one /one\nCOPY two /two\n`,
    one: randomBytes(9 << 20).toString("base64"),
    two: randomBytes(9 << 20).toString("base64"),
  });
  const image = `${testRegistry()}/test/pull-layers:1`;
  await kilnOk(["build", "--platform", "linux/amd64", "-t", image, "--push", layered], {
    root: join(dir, "root-push"),
    cwd: dir,
  });
  const layers = await amd64Layers(testRegistry(), "test/pull-layers:1");
  assert.equal(layers.length, 3);

  const user = await writeContext(join(dir, "uses-layers"), {
    Dockerfile: `FROM ${proxy.host}/test/pull-layers:1\nRUN test -s /one && test -s /two && echo ok > /ok\n`,
  });
  const mark = proxy.requests.length;
  const root = join(dir, "root-layers");
  const out = join(root, "out");
  await kilnOk(["build", "--platform", "linux/amd64", "-o", `type=local,dest=${out}`, user], {
    root,
    cwd: dir,
  });
  assert.equal(await run("cat", [join(out, "ok")]), "ok\n");
  const fetchOf = (digest: string) =>
    proxy.requests
      .slice(mark)
      .find((r) => r.method === "GET" && r.path.endsWith(`/blobs/${digest}`))!;
  const [one, two] = [fetchOf(layers[1]!), fetchOf(layers[2]!)];
  // one after the other, the upper layer's download would start once the lower one is in
  assert.ok(two.started < one.ended!, "the upper layer was fetched while the lower one was");
});

/** Builds the context into root/out; the RUN step there checked busybox was unpacked. */
async function buildToDir(root: string): Promise<void> {
  const out = join(root, "out");
  await kilnOk(["build", "--platform", "linux/amd64", "-o", `type=local,dest=${out}`, ctx], {
    root,
    cwd: dir,
  });
  assert.equal(await run("cat", [join(out, "ok")]), "ok\n");
}
