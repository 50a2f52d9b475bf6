// The record of pushed blobs (metadata pushed_blobs): a rebuild's push does not ask the
// registry for blobs an earlier push left there, and when the registry has lost one since,
// the push notices (the registry refuses the manifest) and sends it again. Checked against a
// registry of the test's own, by its access log and by copying every image out with skopeo.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  collect,
  kilnOk,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";
import { readAccessLog, startRegistry, type RunningRegistry } from "../fixtures/registry.js";
import { startFaultProxy } from "../fixtures/registry-proxy.js";

const base = testRegistry();
let dir = "";
let ctx = "";
let reg: RunningRegistry;

before(async () => {
  dir = await tempDir("push-record");
  reg = await startRegistry();
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${base}/base/busybox\nCOPY a.txt /a.txt\nRUN echo built > /b.txt\n`,
    "a.txt": "a\n",
  });
});
after(async () => {
  await reg.stop();
  await removeTree(dir);
});

const push = (tag: string, provenance = false, repository = "rec/app") =>
  kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      `--provenance=${provenance}`,
      "-t",
      `${reg.host}/${repository}:${tag}`,
      "--push",
      ".",
    ],
    { root: join(dir, "root"), cwd: ctx },
  );

/** The requests of one push: what the access log gained while fn ran. */
async function requestsOf(fn: () => Promise<unknown>) {
  const before = (await readAccessLog(reg.logFile)).length;
  await fn();
  return (await readAccessLog(reg.logFile)).slice(before);
}

/** skopeo reads every blob of every platform, verifying each against its digest. */
async function complete(tag: string, repository = "rec/app"): Promise<void> {
  await run("skopeo", [
    "copy",
    "--quiet",
    "--all",
    "--src-tls-verify=false",
    `docker://${reg.host}/${repository}:${tag}`,
    `oci:${join(dir, `copy-${repository.replace("/", "-")}-${tag}`)}:x`,
  ]);
}

test("a rebuild pushes without asking for the blobs its last push left; a lost blob is sent again", async () => {
  const first = await requestsOf(() => push("1"));
  assert.ok(
    first.some((r) => r.method === "HEAD" && r.path.includes("/blobs/")),
    "the first push asks which blobs the repository has",
  );
  await complete("1");

  const second = await requestsOf(() => push("2"));
  const blobRequests = second.filter((r) => r.path.includes("/blobs/"));
  assert.deepEqual(blobRequests, [], "nothing asked or sent for blobs already pushed");
  assert.ok(second.some((r) => r.method === "PUT" && r.path === "/v2/rec/app/manifests/2"));
  await complete("2");

  // the registry loses a layer the image needs
  const manifest = JSON.parse(
    await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      "--override-arch",
      "arm64",
      `docker://${reg.host}/rec/app:2`,
    ]),
  ) as { manifests: { digest: string }[] };
  const image = JSON.parse(
    await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${reg.host}/rec/app@${manifest.manifests[0]!.digest}`,
    ]),
  ) as { layers: { digest: string }[] };
  const lost = image.layers.at(-1)!.digest;
  const res = await fetch(`http://${reg.host}/v2/rec/app/blobs/${lost}`, { method: "DELETE" });
  assert.equal(res.status, 202);

  const third = await requestsOf(() => push("3"));
  assert.ok(
    third.some(
      (r) =>
        r.method === "PUT" && r.path.includes("/blobs/uploads/") && r.path.includes(lost.slice(7)),
    ),
    "the lost blob is uploaded again",
  );
  await complete("3");

  // `kiln prune --all` forgets what pushes left: the next push asks the registry again
  const pruned = await collect(
    await startKiln(["prune", "--all", "--force"], { root: join(dir, "root"), cwd: ctx }),
  );
  assert.equal(pruned.code, 0, pruned.messages.join("\n"));
  const fourth = await requestsOf(() => push("4"));
  assert.ok(
    fourth.some((r) => r.method === "HEAD" && r.path.includes("/blobs/")),
    "after prune --all the push asks which blobs the repository has",
  );
  await complete("4");
});

test("a build from an imported cache sends no blob the repository has, though it holds none of them", async () => {
  // one platform: the image rebuilt from the cache is the same image (with several, a layer
  // two platforms share has one creation time in the cache, as in BuildKit's)
  const build = (state: string, ...args: string[]) =>
    kilnOk(["build", "--platform", "linux/amd64", "--provenance=false", ...args, "."], {
      root: join(dir, state),
      cwd: ctx,
    });
  await build(
    "export-state",
    "--cache-to",
    `type=registry,ref=${reg.host}/rec/imp-cache:max,mode=max`,
    "-t",
    `${reg.host}/rec/imp:1`,
    "--push",
  );
  // from an empty state: every layer is only in the registry, and no push is on record
  const importTo = (state: string, ref: string) =>
    requestsOf(() =>
      build(state, "--cache-from", `${reg.host}/rec/imp-cache:max`, "-t", ref, "--push"),
    );
  const imported = await importTo("import-state", `${reg.host}/rec/imp:2`);
  const uploads = imported.filter((r) => r.path.includes("/blobs/uploads/"));
  assert.deepEqual(uploads, [], "nothing uploaded: the repository has every blob");
  assert.ok(imported.some((r) => r.method === "PUT" && r.path === "/v2/rec/imp/manifests/2"));

  // to a repository without them, the layers are mounted from the cache's: never read from
  // the empty state (no upload is opened that does not mount)
  const elsewhere = await importTo("import-state-2", `${reg.host}/rec/imp-other:1`);
  const opened = elsewhere.filter((r) => r.method === "POST" && r.path.includes("/blobs/uploads/"));
  const mounted = opened.filter((r) => r.path.includes("mount=") && r.status === 201);
  assert.ok(mounted.length >= 2, JSON.stringify(opened));
  // the one upload that is not a mount: the image config, which the cache does not hold
  assert.equal(opened.length - mounted.length, 1, JSON.stringify(opened));
  await complete("1", "rec/imp-other");
});

test("a rebuild's new provenance goes up without asking; nothing else is asked or sent", async () => {
  const repository = "rec/prov";
  await push("1", true, repository);
  // the same build again: new statements (their times), everything else on record
  const second = await requestsOf(() => push("2", true, repository));
  const blobRequests = second.filter((r) => r.path.includes("/blobs/"));
  assert.deepEqual(
    blobRequests.map((r) => r.method).sort(),
    ["POST", "POST", "PUT", "PUT"],
    JSON.stringify(blobRequests),
  );
  await complete("2", repository);
});

test("a base image's layers are mounted from the base's repository, not uploaded again", async () => {
  // the base in the registry the build pushes to: its layers are already there, in rec/base
  await run("skopeo", [
    "copy",
    "--quiet",
    "--all",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
    `docker://${base}/base/busybox`,
    `docker://${reg.host}/rec/base:1`,
  ]);
  const index = JSON.parse(
    await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${reg.host}/rec/base:1`,
    ]),
  ) as { manifests: { digest: string; platform: { architecture: string } }[] };
  const baseLayers: string[] = [];
  for (const m of index.manifests.filter((m) =>
    ["amd64", "arm64"].includes(m.platform.architecture),
  )) {
    const image = JSON.parse(
      await run("skopeo", [
        "inspect",
        "--raw",
        "--tls-verify=false",
        `docker://${reg.host}/rec/base@${m.digest}`,
      ]),
    ) as { layers: { digest: string }[] };
    baseLayers.push(...image.layers.map((l) => l.digest));
  }
  assert.ok(baseLayers.length >= 2);
  const fromBase = await writeContext(join(dir, "ctx-mount"), {
    Dockerfile: `FROM ${reg.host}/rec/base:1\nCOPY a.txt /a.txt\n`,
    "a.txt": "a\n",
  });
  const requests = await requestsOf(() =>
    kilnOk(
      [
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--provenance=false",
        "-t",
        `${reg.host}/rec/mounted:1`,
        "--push",
        ".",
      ],
      { root: join(dir, "mount-state"), cwd: fromBase },
    ),
  );
  const pushes = requests.filter((r) => r.path.startsWith("/v2/rec/mounted/blobs/uploads/"));
  for (const layer of baseLayers) {
    const mine = pushes.filter((r) => r.path.includes(layer.slice(7)));
    assert.deepEqual(
      mine.map((r) => [r.method, r.status, r.path.includes("from=rec%2Fbase")]),
      [["POST", 201, true]],
      `${layer}: ${JSON.stringify(mine)}`,
    );
  }
  await complete("1", "rec/mounted");
});

test("built layers go up while they are compressed; a registry that refuses or cuts that gets them whole", async () => {
  const proxy = await startFaultProxy(reg.host);
  try {
    const big = await writeContext(join(dir, "ctx-streamed"), {
      Dockerfile: `FROM ${base}/base/busybox\nCOPY big.bin /big.bin\nRUN echo built > /b.txt\n`,
      "big.bin": randomBytes(3 << 20).toString("base64"),
    });
    const build = (repository: string) =>
      kilnOk(
        [
          "build",
          "--platform",
          "linux/amd64",
          "--provenance=false",
          "-t",
          `${proxy.host}/${repository}:1`,
          "--push",
          ".",
        ],
        { root: join(dir, `root-${repository.replace("/", "-")}`), cwd: big },
      );
    const streamed = (repository: string) =>
      proxy.requests.filter(
        (r) =>
          r.method === "PATCH" &&
          r.path.startsWith(`/v2/${repository}/blobs/uploads/`) &&
          r.headers["content-range"] === undefined,
      );

    await build("stream/app");
    const patches = streamed("stream/app");
    assert.equal(patches.length, 2, "one streamed upload per built layer (COPY, RUN)");
    assert.ok(patches.every((r) => r.status === 202));
    await complete("1", "stream/app");

    proxy.inject({
      method: "PATCH",
      path: /^\/v2\/stream\/refused\/blobs\/uploads\//,
      fault: { kind: "respond", status: 416 },
      times: 100,
    });
    await build("stream/refused");
    assert.equal(streamed("stream/refused").length, 2, "both streams were tried and refused");
    await complete("1", "stream/refused");

    // a connection cut as the stream starts: the same, without an answer to go by
    proxy.inject({
      method: "PATCH",
      path: /^\/v2\/stream\/cut\/blobs\/uploads\//,
      fault: { kind: "reset" },
      times: 100,
    });
    await build("stream/cut");
    await complete("1", "stream/cut");
  } finally {
    await proxy.stop();
  }
});
