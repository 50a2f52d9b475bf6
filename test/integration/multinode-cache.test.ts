// A remote cache on a multi-node builder: two kilnd nodes each build one platform and export
// their part of one --cache-to ref (mode=max); the client merges the parts, so ONE ref covers
// both platforms; a third node with an empty state imports that ref and starts no container
// for either platform (its runc invocations are counted).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remoteBuild, type Builder } from "../../src/client/index.js";
import type { BuildRequest } from "../../src/request/index.js";
import { parsePlatformList } from "../../src/platform/index.js";
import { RecordingSink } from "../../src/progress/index.js";
import { parseCacheFrom, parseCacheTo } from "../../src/remotecache/index.js";
import {
  containerStarts,
  ensureBuilt,
  runcLogger,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { repoRoot, run } from "../fixtures/exec.js";
import { spawnIn, waitForLog, type HostProcess } from "../fixtures/netns.js";

const reg = testRegistry();
let dir: string;
let ctx: string;
let runcLog: string;
const daemons: HostProcess[] = [];

/** kilnd on a unix socket with its own state; node c's runc calls are logged. */
async function startNode(name: string, platforms: string, path?: string): Promise<string> {
  const sock = join(dir, `${name}.sock`);
  const p = spawnIn(
    undefined,
    [
      "env",
      `PATH=${path ?? process.env.PATH ?? ""}`,
      process.execPath,
      join(repoRoot, "dist/daemon/main.js"),
      "--name",
      name,
      "--addr",
      `unix://${sock}`,
      "--root",
      join(dir, `root-${name}`),
      "--platform",
      platforms,
    ],
    join(dir, `kilnd-${name}.log`),
  );
  daemons.push(p);
  await waitForLog(p, /listening on unix:/);
  return sock;
}

function builder(nodes: Record<string, string>): Builder {
  return {
    name: "cache",
    nodes: Object.entries(nodes).map(([name, sock]) => ({
      name,
      endpoint: `unix://${sock}`,
      platforms: [],
    })),
  };
}

function request(extra: Partial<BuildRequest>): BuildRequest {
  return {
    contextDir: ctx,
    dockerfile: "Dockerfile",
    namedContexts: {},
    platforms: parsePlatformList(["linux/amd64,linux/arm64"]),
    buildArgs: {},
    tags: [],
    labels: {},
    outputs: [{ type: "local", dest: join(dir, `out-${randomBytes(3).toString("hex")}`) }],
    noCache: false,
    noCacheFilter: [],
    pull: false,
    secrets: {},
    ssh: {},
    network: "default",
    extraHosts: [],
    ignoreBinfmt: false,
    insecureRegistries: [],
    ...extra,
  };
}

const nodeOf = (name: string): string | undefined => /^\[(\w+)\]/.exec(name)?.[1];

let nodes: Record<string, string>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-multinode-cache-"));
  await ensureBuilt();
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox AS tool
RUN uname -m > /arch
FROM ${reg}/base/busybox
COPY --from=tool /arch /arch
RUN cat /arch > /copy
`,
  });
  runcLog = join(dir, "runc.log");
  const wrapper = await runcLogger(join(dir, "bin"), runcLog);
  const [a, b, c] = await Promise.all([
    startNode("a", "linux/amd64"),
    startNode("b", "linux/arm64"),
    startNode("c", "linux/amd64,linux/arm64", `${wrapper}:${process.env.PATH ?? ""}`),
  ]);
  nodes = { a: a, b: b, c: c };
});

after(async () => {
  for (const d of daemons) d.kill("SIGKILL");
  await Promise.all(daemons.map((d) => d.exited));
  await rm(dir, { recursive: true, force: true });
});

test("two nodes fill one cache ref that a third, empty node imports completely", async () => {
  const ref = `${reg}/multinode-cache-${randomBytes(4).toString("hex")}:buildcache`;
  const fill = new RecordingSink();
  await remoteBuild(
    request({
      cacheTo: [
        parseCacheTo(
          "",
          new Map([
            ["ref", ref],
            ["mode", "max"],
          ]),
        ),
      ],
    }),
    builder({ a: nodes.a!, b: nodes.b! }),
    { progress: fill, strictPlatforms: false },
  );
  const ran = new Set(
    fill
      .vertices()
      .filter((v) => v.started !== undefined && !v.cached && /RUN /.test(v.name))
      .map((v) => `${nodeOf(v.name)} ${v.platform}`),
  );
  assert.deepEqual(
    [...ran].sort(),
    ["a linux/amd64", "b linux/arm64"],
    "each node built its platform",
  );

  // one ref: a cache image manifest (BuildKit's default form) whose config is the merged records
  const manifest = JSON.parse(
    await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`]),
  ) as { config: { mediaType: string }; layers: unknown[] };
  assert.equal(manifest.config.mediaType, "application/vnd.buildkit.cacheconfig.v0");
  assert.ok(manifest.layers.length >= 4, "both platforms' base and built layers");

  const use = new RecordingSink();
  await remoteBuild(
    request({ cacheFrom: [parseCacheFrom(ref, new Map())] }),
    builder({ c: nodes.c! }),
    { progress: use, strictPlatforms: false },
  );
  const steps = use.vertices().filter((v) => v.id.includes("sha256:"));
  assert.ok(steps.some((v) => /RUN /.test(v.name)));
  const started = steps.filter(
    (v) => v.started !== undefined && !v.cached && /RUN |COPY /.test(v.name),
  );
  assert.deepEqual(
    started.map((v) => v.name),
    [],
    "node c ran no step",
  );
  assert.deepEqual(await containerStarts(runcLog), [], "node c started no container");
});
