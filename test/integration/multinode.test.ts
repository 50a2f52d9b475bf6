// Multi-node builders across real hosts: three kilnd processes, each in its own network
// namespace (veth-linked, private 10.203.x.y addresses), with their own state directories and
// configured platforms, mutual TLS between client and nodes, and a registry all of them reach.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { isKilnError } from "../../src/errors.js";
import { NodeClient, packUpload, remoteBuild, type Builder } from "../../src/client/index.js";
import {
  PROTOCOL_VERSION,
  LineReader,
  type BuildHeader,
  type ServerLine,
} from "../../src/daemon/index.js";
import type { BuildRequest, BuildResult } from "../../src/request/index.js";
import type { ImageIndex } from "../../src/oci/index.js";
import { parsePlatformList } from "../../src/platform/index.js";
import { RecordingSink, type ProgressEvent } from "../../src/progress/index.js";
import { RegistryClient } from "../../src/registry/index.js";
import { BASE_IMAGE_REPO, ensureBaseImages } from "../fixtures/base-images.js";
import { repoRoot, run } from "../fixtures/exec.js";
import { removeTree } from "../fixtures/build-cli.js";
import {
  createNetwork,
  makeCertificates,
  spawnIn,
  startRegistryAt,
  waitForLog,
  type HostProcess,
  type TestCertificates,
  type TestHost,
  type TestNetwork,
} from "../fixtures/netns.js";

const PORT = 1234;
let dir: string;
let net: TestNetwork;
let certs: TestCertificates;
let registry: HostProcess;
let reg: string;
const nodes = new Map<string, HostProcess>();
let ctx: string;

const hostOf = (name: string): TestHost => net.hosts.find((h) => h.name === name)!;
const logOf = (name: string): Promise<string> => readFile(nodes.get(name)!.logFile, "utf8");

const nodeFlags: Record<string, string[]> = {
  a: ["--platform", "linux/amd64"],
  b: ["--platform", "linux/arm64,linux/arm/v7"],
  c: ["--insecure"],
};

async function startNode(name: string): Promise<void> {
  const tls =
    name === "c"
      ? []
      : [
          "--tlscacert",
          certs.ca,
          "--tlscert",
          certs.server(name).cert,
          "--tlskey",
          certs.server(name).key,
        ];
  const p = spawnIn(
    hostOf(name),
    [
      process.execPath,
      "--import",
      "tsx",
      join(repoRoot, "src/daemon/main.ts"),
      "--name",
      name,
      "--addr",
      `tcp://0.0.0.0:${PORT}`,
      "--root",
      join(dir, `root-${name}`),
      ...tls,
      ...nodeFlags[name]!,
    ],
    // a log per start: a restarted node's readiness is read from its own
    join(dir, `kilnd-${name}-${Date.now()}.log`),
  );
  nodes.set(name, p);
  await waitForLog(p, new RegExp(`listening on tcp://0\\.0\\.0\\.0:${PORT}`));
}

function builder(names: string[], tls = certs.client): Builder {
  return {
    name: "mb",
    nodes: names.map((n) => ({
      name: n,
      endpoint: `tcp://${hostOf(n).ip}:${PORT}`,
      platforms: [],
      ...(n === "c" ? {} : { tls: { ca: certs.ca, cert: tls.cert, key: tls.key } }),
    })),
  };
}

function request(
  platforms: string,
  stamp: string,
  extra: Partial<BuildRequest> = {},
): BuildRequest {
  return {
    contextDir: ctx,
    dockerfile: "Dockerfile",
    namedContexts: {},
    platforms: parsePlatformList([platforms]),
    buildArgs: { STAMP: stamp },
    tags: [],
    labels: {},
    outputs: [
      {
        type: "image",
        names: [`${reg}/app:1`],
        push: true,
        pushByDigest: false,
        nameCanonical: false,
        ociMediaTypes: true,
        compression: "gzip",
        forceCompression: false,
        annotations: {},
        insecure: true,
      },
    ],
    noCache: false,
    noCacheFilter: [],
    pull: false,
    secrets: {},
    ssh: {},
    network: "default",
    extraHosts: [],
    ignoreBinfmt: false,
    insecureRegistries: [reg],
    ...extra,
  };
}

/** A sink that also lets a test act when a given event arrives (to kill a node mid-build). */
class WatchingSink extends RecordingSink {
  constructor(private readonly onEvent: (ev: ProgressEvent) => void = () => undefined) {
    super();
  }
  override write(ev: ProgressEvent): void {
    super.write(ev);
    this.onEvent(ev);
  }
}

async function tagDigest(): Promise<{ digest: string; platforms: string[] }> {
  const client = new RegistryClient({ insecureHosts: [reg] });
  try {
    const m = await client.getManifest({ registry: reg, repository: "app" }, "1");
    assert.equal(m.document.kind, "index");
    const platforms =
      m.document.kind === "index"
        ? m.document.index.manifests.map((d) =>
            [d.platform!.os, d.platform!.architecture, d.platform!.variant]
              .filter(Boolean)
              .join("/"),
          )
        : [];
    return { digest: m.descriptor.digest, platforms: platforms.sort() };
  } finally {
    client.close();
  }
}

/** Node per target platform, from the node-tagged names of the final stage's RUN (`[b] …`). */
function buildersOf(sink: RecordingSink): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const v of sink.vertices()) {
    if (v.platform === undefined || !v.name.includes("sleep")) continue;
    const node = /^\[(\w+)\]/.exec(v.name)?.[1];
    if (node === undefined) continue;
    if (!out.has(v.platform)) out.set(v.platform, new Set());
    out.get(v.platform)!.add(node);
  }
  return out;
}

/** Builds with node b killed once it runs its first emulated-platform step. */
function buildKillingB(
  stamp: string,
  strict: boolean,
): { sink: RecordingSink; result: Promise<BuildResult> } {
  let killed = false;
  const sink = new WatchingSink((ev) => {
    if (
      !killed &&
      ev.type === "vertex" &&
      ev.started !== undefined &&
      ev.name.startsWith("[b]") &&
      /sleep/.test(ev.name)
    ) {
      killed = true;
      nodes.get("b")!.kill("SIGKILL");
    }
  });
  const result = remoteBuild(
    request("linux/amd64,linux/arm64,linux/arm/v7", stamp),
    builder(["a", "b"]),
    {
      progress: sink,
      strictPlatforms: strict,
    },
  );
  return { sink, result };
}

describe("multi-node builders", { timeout: 600_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kiln-multinode-"));
    net = await createNetwork(["a", "b", "c"]);
    certs = await makeCertificates(
      dir,
      net.hosts.map((h) => ({ name: h.name, ip: h.ip })),
    );
    reg = `${hostOf("a").gateway}:5000`;
    registry = await startRegistryAt(reg, dir);
    // not loopback, so plain HTTP: skopeo is told, kiln gets it as an insecure registry
    const base = await ensureBaseImages();
    await run("skopeo", [
      "copy",
      "--quiet",
      "--all",
      "--dest-tls-verify=false",
      `oci:${base.layoutDir}:latest`,
      `docker://${reg}/${BASE_IMAGE_REPO}:latest`,
    ]);
    ctx = join(dir, "ctx");
    await mkdir(ctx);
    await writeFile(
      join(ctx, "Dockerfile"),
      [
        `FROM --platform=$BUILDPLATFORM ${reg}/base/busybox:latest AS gen`,
        "RUN echo generated > /gen.txt",
        `FROM ${reg}/base/busybox:latest`,
        "COPY --from=gen /gen.txt /gen.txt",
        "COPY hello.txt /hello.txt",
        "ARG STAMP",
        "RUN echo $STAMP > /stamp && sleep 2",
        "",
      ].join("\n"),
    );
    await writeFile(join(ctx, "hello.txt"), "hello\n");
    await writeFile(
      join(ctx, "secret.Dockerfile"),
      `FROM ${reg}/base/busybox:latest\nRUN --mount=type=secret,id=tok test ! -e /run/secrets/tok\n`,
    );
    await Promise.all(["a", "b", "c"].map(startNode));
  });

  after(async () => {
    for (const p of nodes.values()) p.kill("SIGKILL");
    registry?.kill("SIGKILL");
    await net?.destroy();
    // a node killed mid-RUN leaves its container and mounts
    await removeTree(
      dir,
      ["a", "b", "c"].map((n) => join(dir, `root-${n}`)),
    );
  });

  test("each platform is built on its configured node and merged into one index", async () => {
    const sink = new RecordingSink();
    const result = await remoteBuild(
      request("linux/amd64,linux/arm64,linux/arm/v7", "one"),
      builder(["a", "b"]),
      {
        progress: sink,
        strictPlatforms: false,
      },
    );
    const by = buildersOf(sink);
    assert.deepEqual([...by.get("linux/amd64")!], ["a"]);
    assert.deepEqual([...by.get("linux/arm64")!], ["b"]);
    assert.deepEqual([...by.get("linux/arm/v7")!], ["b"]);
    // b's two platforms were one solve: the $BUILDPLATFORM stage ran once there
    const gen = sink
      .vertices()
      .filter((v) => v.name.startsWith("[b]") && v.name.includes("echo generated"));
    assert.equal(gen.length, 1, gen.map((v) => v.name).join("\n"));
    assert.match(await logOf("a"), /platforms linux\/amd64, waiting/);
    assert.match(await logOf("b"), /platforms linux\/arm64,linux\/arm\/v7, waiting/);
    const tagged = await tagDigest();
    assert.equal(tagged.digest, result.digest);
    assert.deepEqual(tagged.platforms, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);
  });

  test("a repeated build skips an unreachable node, lands on the same nodes and hits their caches", async () => {
    const sink = new RecordingSink();
    // listed first and configured for arm64, but nothing listens there
    const withDead = builder(["a", "b"]);
    withDead.nodes.unshift({
      name: "gone",
      endpoint: `tcp://${hostOf("c").ip}:${PORT + 1}`,
      platforms: ["linux/arm64"],
    });
    await remoteBuild(request("linux/amd64,linux/arm64,linux/arm/v7", "one"), withDead, {
      progress: sink,
      strictPlatforms: false,
    });
    assert.ok(sink.ofType("warning").some((w) => /node gone is unreachable/.test(w.message)));
    assert.deepEqual([...buildersOf(sink).get("linux/arm64")!], ["b"]);
    const summary = sink.ofType("summary").at(-1)!;
    assert.equal(summary.platforms.length, 3);
    for (const p of summary.platforms) assert.equal(p.cached, p.total, JSON.stringify(p));
  });

  test("file outputs come back from the nodes and are assembled into one layout", async () => {
    const layout = join(dir, "layout");
    const files = join(dir, "files");
    const r = await remoteBuild(
      request("linux/amd64,linux/arm64,linux/arm/v7", "one", {
        outputs: [
          { type: "oci", dest: layout, tar: false, names: ["app:1"], annotations: {} },
          { type: "local", dest: files },
        ],
      }),
      builder(["a", "b"]),
      { progress: new RecordingSink(), strictPlatforms: false },
    );
    const top = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as ImageIndex;
    assert.equal(top.manifests[0]!.digest, r.digest);
    const index = JSON.parse(
      await readFile(join(layout, "blobs", "sha256", r.digest.slice(7)), "utf8"),
    ) as ImageIndex;
    assert.deepEqual(
      index.manifests.map((d) => `${d.platform!.architecture}${d.platform!.variant ?? ""}`).sort(),
      ["amd64", "arm64", "armv7"],
    );
    // the same bytes a push of this build produced: one index, wherever it goes
    assert.equal(r.digest, (await tagDigest()).digest);
    for (const p of ["linux_amd64", "linux_arm64", "linux_arm_v7"]) {
      assert.equal(await readFile(join(files, p, "hello.txt"), "utf8"), "hello\n");
    }
  });

  test("a node killed mid-build has its platforms re-routed (emulated) and the build completes", async () => {
    const { sink, result } = buildKillingB("two", false);
    const r = await result;
    const warning = sink.ofType("warning").find((w) => /node b failed/.test(w.message));
    assert.ok(warning, "a warning names the lost node");
    assert.match(warning.message, /re-routing linux\/arm64, linux\/arm\/v7 to a \(emulated\)/);
    const tagged = await tagDigest();
    assert.equal(tagged.digest, r.digest);
    assert.deepEqual(tagged.platforms, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);
    const armOnA = sink
      .vertices()
      .filter((v) => v.platform === "linux/arm64" && v.name.startsWith("[a]") && v.emulated);
    assert.ok(armOnA.length > 0, "arm64 steps ran emulated on a");
    await startNode("b");
  });

  test("with strict platforms a dying node fails the build and the tag stays where it was", async () => {
    const before = await tagDigest();
    const { result } = buildKillingB("three", true);
    await assert.rejects(result, (e: unknown) => {
      assert.ok(isKilnError(e));
      assert.equal(e.code, "E_NODE_LOST");
      assert.match(
        e.message,
        /node b failed.*no node can build linux\/arm64, linux\/arm\/v7 natively/s,
      );
      return true;
    });
    assert.equal((await tagDigest()).digest, before.digest);
    await startNode("b");
  });

  test("kilnd refuses clients without a certificate from its CA", async () => {
    const stranger = new NodeClient(builder(["a"], certs.stranger).nodes[0]!);
    await assert.rejects(
      stranger.info(),
      (e: unknown) => isKilnError(e) && e.code === "E_NODE_UNREACHABLE",
    );
    const anonymous = await fetch(`https://${hostOf("a").ip}:${PORT}/info`).then(
      () => "answered",
      () => "refused",
    );
    assert.equal(anonymous, "refused");
    assert.match(await logOf("a"), /refused a TLS client/);
    const trusted = await new NodeClient(builder(["a"]).nodes[0]!).info();
    assert.equal(trusted.name, "a");
    assert.deepEqual(trusted.configured, ["linux/amd64"]);
  });

  test("secrets never travel over plain TCP: the client refuses, the node drops them", async () => {
    const secrets = { tok: Buffer.from("s3cr3t") };
    const req = request("linux/amd64", "s", {
      dockerfile: "secret.Dockerfile",
      outputs: [],
      secrets,
    });
    await assert.rejects(
      remoteBuild(req, builder(["c"]), { progress: new RecordingSink(), strictPlatforms: false }),
      (e: unknown) => isKilnError(e) && e.code === "E_SECRET_INSECURE",
    );
    assert.doesNotMatch(await logOf("c"), /build \w+ from/);

    // a client that sends them anyway: the node builds without them and says so
    const header: BuildHeader = {
      protocol: PROTOCOL_VERSION,
      request: { ...request("linux/amd64", "s", { outputs: [] }) },
      dockerfile: "secret.Dockerfile",
      namedContexts: [],
      secrets: { tok: secrets.tok.toString("base64") },
    };
    delete (header.request as Partial<BuildRequest>).contextDir;
    const lines: ServerLine[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { host: hostOf("c").ip, port: PORT, method: "POST", path: "/build" },
        (res) => {
          (async () => {
            const reader = new LineReader(res);
            for (let l = await reader.nextLine(); l !== undefined; l = await reader.nextLine())
              lines.push(JSON.parse(l) as ServerLine);
          })().then(resolve, reject);
        },
      );
      req.on("error", reject);
      pipeline(
        Readable.from(
          (async function* () {
            yield Buffer.from(`${JSON.stringify(header)}\n`);
            yield* packUpload({
              contextDir: ctx,
              dockerfile: join(ctx, "secret.Dockerfile"),
              namedContexts: {},
            });
          })(),
        ),
        req,
      ).catch(reject);
    });
    assert.ok(
      lines.some(
        (l) =>
          l.type === "warning" && /tok arrived over plain TCP and were dropped/.test(l.message),
      ),
    );
    const end = lines.at(-1)!;
    assert.equal(end.type, "result", JSON.stringify(end));
  });
});
