// Bearer-token auth against a real registry configured with `auth: token` and our token server.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { ContentStore } from "../../src/content/index.js";
import { KilnError } from "../../src/errors.js";
import {
  RegistryClient,
  pullImage,
  pushImage,
  type Credentials,
} from "../../src/registry/index.js";
import { readAccessLog, type RunningRegistry } from "../fixtures/registry.js";
import { startFaultProxy, type FaultProxy } from "../fixtures/registry-proxy.js";
import { buildIndex, type BuiltImage } from "../fixtures/registry-images.js";
import {
  startTokenRegistry,
  startTokenServer,
  type TokenServer,
} from "../fixtures/token-server.js";

const password = "correct horse battery staple";
let dir: string;
let store: ContentStore;
let image: BuiltImage;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-registry-token-"));
  store = await ContentStore.open(join(dir, "store"));
  image = await buildIndex(
    store,
    [
      { os: "linux", architecture: "amd64" },
      { os: "linux", architecture: "arm64" },
    ],
    "token",
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const as = (creds: Credentials | undefined) => () => Promise.resolve(creds);
const alice: Credentials = { username: "alice", password };

async function expectCode(p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, `expected KilnError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe("token auth", () => {
  let tokens: TokenServer;
  let reg: RunningRegistry;
  before(async () => {
    tokens = await startTokenServer({
      users: { alice: password },
      refreshTokens: { "alice-refresh": "alice" },
      denied: ["team/private"],
    });
    reg = await startTokenRegistry(tokens);
  });
  after(async () => {
    await reg.stop();
    await tokens.stop();
  });

  test("push then pull with Basic credentials at the token realm; one token per scope set", async () => {
    const client = new RegistryClient({ auth: as(alice) });
    const repo = { registry: reg.host, repository: "team/app" };
    const mark = tokens.requests.length;
    await pushImage(client, store, image.index, repo, ["v1"]);
    const pushTokens = tokens.requests.slice(mark);
    assert.equal(pushTokens.length, 1, "parallel blob pushes share one cached token");
    assert.deepEqual(pushTokens[0], {
      method: "GET",
      user: "alice",
      scopes: ["repository:team/app:pull,push"],
      status: 200,
    });
    const target = await ContentStore.open(join(dir, "pulled"));
    const r = await pullImage(client, target, repo, "v1", {
      platform: { os: "linux", architecture: "arm64" },
    });
    assert.equal(r.manifests[0]!.digest, image.manifests[1]!.desc.digest);
    assert.equal(tokens.requests.length - mark, 2, "pull scope is a second token, then cached");
    assert.equal(client.tokenRequests, 2);
    client.close();
  });

  test("a blob streamed while it is written asks for its push token once, then goes up", async () => {
    const client = new RegistryClient({ auth: as(alice) });
    const repo = { registry: reg.host, repository: "team/streamed" };
    const mark = tokens.requests.length;
    const body = new PassThrough();
    const upload = client.uploadWhileWritten(repo, body);
    const bytes = Buffer.from("a layer written while it goes up\n".repeat(4096));
    body.end(bytes);
    const desc = {
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
      size: bytes.length,
    };
    assert.equal(await upload.commit(desc), "uploaded");
    assert.deepEqual(
      tokens.requests.slice(mark).map((r) => r.scopes),
      [["repository:team/streamed:pull,push"]],
    );
    const back = createHash("sha256");
    for await (const c of client.fetchBlob(repo, desc)) back.update(c as Buffer);
    assert.equal(`sha256:${back.digest("hex")}`, desc.digest);
    client.close();
  });

  test("cross-repository mount asks for one token with both scopes", async () => {
    const client = new RegistryClient({ auth: as(alice) });
    const mark = tokens.requests.length;
    await pushImage(
      client,
      store,
      image.index,
      { registry: reg.host, repository: "team/copy" },
      ["v1"],
      {
        mountFrom: ["team/app"],
      },
    );
    const scopes = tokens.requests.slice(mark).map((t) => t.scopes.sort().join(" "));
    assert.deepEqual(scopes, [
      "repository:team/copy:pull,push",
      "repository:team/app:pull repository:team/copy:pull,push",
    ]);
    const log = await readAccessLog(reg.logFile);
    const mounts = log.filter(
      (e) => e.method === "POST" && e.path.includes("/team/copy/") && e.path.includes("mount="),
    );
    assert.equal(mounts.length, image.blobs.length);
    assert.ok(mounts.every((e) => e.status === 201));
    assert.equal(
      log.filter(
        (e) => (e.method === "PATCH" || e.method === "PUT") && e.path.includes("/team/copy/blobs/"),
      ).length,
      0,
    );
    client.close();
  });

  test("a mount from a repository the token does not reach falls back to an upload", async () => {
    // a blob on record in a repository the user may not pull from (the registry answers the
    // mount with 401 even with a fresh token): the push uploads it instead of failing
    const client = new RegistryClient({ auth: as(alice) });
    await pushImage(
      client,
      store,
      image.index,
      { registry: reg.host, repository: "team/from-private" },
      ["v1"],
      { mountFrom: ["team/private"] },
    );
    const log = await readAccessLog(reg.logFile);
    const refused = log.filter(
      (e) =>
        e.method === "POST" && e.path.includes("/team/from-private/") && e.path.includes("mount="),
    );
    assert.ok(
      refused.length > 0 && refused.every((e) => e.status === 401),
      JSON.stringify(refused),
    );
    const uploaded = log.filter(
      (e) => e.method === "PUT" && e.path.includes("/team/from-private/blobs/uploads/"),
    );
    assert.equal(uploaded.length, image.blobs.length);
    const target = await ContentStore.open(join(dir, "pulled-from-private"));
    const r = await pullImage(
      client,
      target,
      { registry: reg.host, repository: "team/from-private" },
      "v1",
      {
        platform: { os: "linux", architecture: "amd64" },
      },
    );
    assert.equal(r.manifests[0]!.digest, image.manifests[0]!.desc.digest);
    client.close();
  });

  test("identity token (OAuth2 refresh token) is exchanged by POST", async () => {
    const client = new RegistryClient({ auth: as({ identityToken: "alice-refresh" }) });
    const mark = tokens.requests.length;
    assert.deepEqual(
      await client.resolve({ registry: reg.host, repository: "team/app" }, "v1"),
      image.index,
    );
    assert.deepEqual(
      tokens.requests.slice(mark).map((t) => `${t.method} ${t.user ?? "-"} ${t.status}`),
      ["POST alice 200"],
    );
    client.close();
  });

  test("wrong password, unknown refresh token and anonymous access fail with E_REGISTRY_AUTH", async () => {
    const repo = { registry: reg.host, repository: "team/app" };
    const secret = "not-the-password-42";
    const wrong = new RegistryClient({ auth: as({ username: "alice", password: secret }) });
    const e = await expectCode(wrong.resolve(repo, "v1"), "E_REGISTRY_AUTH");
    assert.ok(!JSON.stringify({ m: e.message, h: e.hint }).includes(secret));
    assert.match(e.message, /rejected the credentials/);
    wrong.close();
    const badRefresh = new RegistryClient({ auth: as({ identityToken: "nope" }) });
    await expectCode(badRefresh.resolve(repo, "v1"), "E_REGISTRY_AUTH");
    badRefresh.close();
    // Without pull rights the anonymous token is refused by the registry itself.
    const anonymous = new RegistryClient({ auth: as(undefined) });
    const a = await expectCode(anonymous.resolve(repo, "v1"), "E_REGISTRY_AUTH");
    assert.match(a.message, /team\/app:v1/);
    anonymous.close();
  });
});

describe("token auth: refresh, anonymous pull, redirects", () => {
  let tokens: TokenServer;
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  before(async () => {
    tokens = await startTokenServer({
      users: { alice: password },
      anonymousPull: true,
      staleTokens: 1,
    });
    reg = await startTokenRegistry(tokens);
    proxy = await startFaultProxy(reg.host);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    await tokens.stop();
  });

  test("a refused (stale) token is dropped and fetched again", async () => {
    const client = new RegistryClient({ auth: as(alice) });
    const repo = { registry: reg.host, repository: "pub/app" };
    await pushImage(client, store, image.index, repo, ["v1"]);
    assert.equal(tokens.requests.length, 2, "the stale first token was replaced once");
    client.close();
  });

  test("anonymous clients pull a public repository but cannot push", async () => {
    const anonymous = new RegistryClient({ auth: as(undefined) });
    const repo = { registry: reg.host, repository: "pub/app" };
    const target = await ContentStore.open(join(dir, "anon-pull"));
    const r = await pullImage(anonymous, target, repo, "v1");
    assert.equal(r.manifests.length, 2);
    await expectCode(
      pushImage(anonymous, store, image.index, { registry: reg.host, repository: "pub/other" }, [
        "v1",
      ]),
      "E_REGISTRY_AUTH",
    );
    anonymous.close();
  });

  test("Authorization is not sent to another host a blob download redirects to", async () => {
    const layer = image.manifests[0]!.doc.layers[0]!;
    const seen: IncomingHttpHeaders[] = [];
    const bytes = await store.readBytes(layer.digest);
    const storage = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { "Content-Length": String(bytes.byteLength) });
      res.end(bytes);
    });
    await new Promise<void>((resolve) => storage.listen(0, "127.0.0.1", resolve));
    const port = (storage.address() as { port: number }).port;
    const client = new RegistryClient({ auth: as(alice) });
    const repo = { registry: proxy.host, repository: "pub/app" };
    // Learn the challenge first, so the blob request carries a token.
    await client.resolve(repo, "v1");
    proxy.inject({
      method: "GET",
      path: new RegExp(`/blobs/${layer.digest}$`),
      fault: {
        kind: "respond",
        status: 307,
        headers: { Location: `http://localhost:${port}/presigned/blob?sig=1` },
        body: "",
      },
    });
    const target = await ContentStore.open(join(dir, "redirected"));
    await target.ingest(client.fetchBlob(repo, layer), { digest: layer.digest });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.authorization, undefined);
    const redirected = proxy.requests.find((r) => r.status === 307);
    assert.match(
      redirected?.headers.authorization ?? "",
      /^Bearer /,
      "the registry itself did get the token",
    );
    client.close();
    storage.closeAllConnections();
    await new Promise((resolve) => storage.close(resolve));
  });
});
