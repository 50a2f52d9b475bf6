// ADD <http(s) URL> through the real `kiln build` against a server on 127.0.0.1: the file's
// name, mode and mtime, destination rules, remote archives left packed unless --unpack, auth
// secrets, and the cache (a revalidated unchanged file is cached, changed content re-runs the
// ADD and the steps after it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  kilnOk,
  named,
  removeTree,
  tempDir,
  vertexRecords,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";
import { TestHttpServer } from "../fixtures/http-server.js";

const LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT";

test("ADD <URL>: file name, 0600, Last-Modified mtime, dest rules, --chmod, archives stay packed", async () => {
  const dir = await tempDir("add-http");
  const srv = await TestHttpServer.start();
  try {
    srv.files.set("/files/hello.txt", { body: "hello\n", lastModified: LAST_MODIFIED });
    srv.files.set("/", { body: "index\n" });
    await writeContext(join(dir, "tar"), { "inside.txt": "packed\n" });
    await run("tar", ["-czf", join(dir, "app.tar.gz"), "-C", join(dir, "tar"), "inside.txt"]);
    const tgz = await readFile(join(dir, "app.tar.gz"));
    srv.files.set("/dl/app.tar.gz", { body: tgz, etag: '"tgz"' });
    srv.files.set("/private/secret.txt", { body: "s\n" });
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM scratch
ADD ${srv.url("/files/hello.txt")} /d/
ADD ${srv.url("/files/hello.txt")} /renamed
ADD --chmod=755 ${srv.url("/files/hello.txt")} /x/
ADD ${srv.url("/")} /root-url/
ADD ${srv.url("/dl/app.tar.gz")} /arch/
ADD --unpack ${srv.url("/dl/app.tar.gz")} /unpacked/
WORKDIR /w
ADD ${srv.url("/private/secret.txt")} .
`,
    });
    const out = join(dir, "out");
    await kilnOk(
      [
        "build",
        "--secret",
        "id=HTTP_AUTH_TOKEN_127.0.0.1,env=KILN_TEST_TOKEN",
        "--output",
        `type=local,dest=${out}`,
        ".",
      ],
      { root: join(dir, "root"), cwd: ctx, env: { KILN_TEST_TOKEN: "t0ken" } },
    );
    const file = async (p: string) => {
      const st = await stat(join(out, p));
      return {
        text: await readFile(join(out, p), "utf8"),
        mode: st.mode & 0o7777,
        mtime: st.mtime,
      };
    };
    const d = await file("d/hello.txt");
    assert.deepEqual(d, { text: "hello\n", mode: 0o600, mtime: new Date(LAST_MODIFIED) });
    assert.deepEqual(await file("renamed"), d, "a destination without / names the file");
    assert.equal((await file("x/hello.txt")).mode, 0o755, "--chmod applies");
    assert.deepEqual(await readdir(join(out, "root-url")), ["__unnamed__"]);
    const root = await file("root-url/__unnamed__");
    assert.equal(root.text, "index\n");
    assert.equal(root.mtime.getTime(), 0, "no Last-Modified: the epoch");
    assert.deepEqual(await readdir(join(out, "arch")), ["app.tar.gz"], "not extracted");
    assert.deepEqual(await readFile(join(out, "arch", "app.tar.gz")), tgz);
    assert.deepEqual(await readdir(join(out, "unpacked")), ["inside.txt"], "--unpack extracts");
    assert.equal((await file("w/secret.txt")).text, "s\n", "relative to WORKDIR");

    const seen = srv.take();
    assert.ok(seen.every((r) => r.method === "GET"));
    assert.equal(
      seen.filter((r) => r.path === "/files/hello.txt").length,
      1,
      "one download per URL, however many ADDs use it",
    );
    assert.equal(seen.filter((r) => r.path === "/dl/app.tar.gz").length, 1);
    assert.ok(
      seen.every((r) => r.headers.authorization === "Bearer t0ken"),
      "HTTP_AUTH_TOKEN_<host> is sent as a bearer token",
    );
  } finally {
    await srv.close();
    await removeTree(dir);
  }
});

test("ADD <URL> cache: unchanged content is revalidated and cached; changed content re-runs", async () => {
  const dir = await tempDir("add-http-cache");
  const srv = await TestHttpServer.start();
  try {
    srv.files.set("/v.txt", { body: "one\n", etag: '"1"' });
    srv.files.set("/lm.txt", { body: "lm\n", lastModified: LAST_MODIFIED });
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM scratch
ADD ${srv.url("/lm.txt")} /lm.txt
ADD ${srv.url("/v.txt")} /v.txt
COPY a.txt /a.txt
`,
      "a.txt": "A\n",
    });
    let n = 0;
    const build = async () => {
      const out = join(dir, `out${++n}`);
      const r = await kilnOk(["build", "--output", `type=local,dest=${out}`, "."], {
        root: join(dir, "root"),
        cwd: ctx,
      });
      return { vs: vertexRecords(r.events), v: await readFile(join(out, "v.txt"), "utf8") };
    };
    const paths = (rs: { path: string; status: number }[]) =>
      rs.map((r) => `${r.path} ${r.status}`).sort();

    const first = await build();
    assert.equal(first.v, "one\n");
    assert.deepEqual(paths(srv.take()), ["/lm.txt 200", "/v.txt 200"]);

    const again = await build();
    assert.equal(again.v, "one\n");
    assert.ok(
      again.vs.length >= 5 && again.vs.every((v) => v.cached && v.starts === 0),
      `everything is cached: ${JSON.stringify(again.vs)}`,
    );
    const revalidations = srv.take();
    assert.deepEqual(paths(revalidations), ["/lm.txt 304", "/v.txt 304"]);
    assert.equal(revalidations.find((r) => r.path === "/v.txt")!.headers["if-none-match"], '"1"');
    assert.equal(
      revalidations.find((r) => r.path === "/lm.txt")!.headers["if-modified-since"],
      LAST_MODIFIED,
    );

    srv.files.set("/v.txt", { body: "two\n", etag: '"2"' });
    const changed = await build();
    assert.equal(changed.v, "two\n");
    assert.deepEqual(paths(srv.take()), ["/lm.txt 304", "/v.txt 200"]);
    const ran = changed.vs.filter((v) => v.starts > 0).map((v) => v.name);
    assert.ok(
      ran.some((name) => /ADD .*\/v\.txt/.test(name)),
      `the ADD of the changed URL ran: ${ran.join(", ")}`,
    );
    assert.equal(named(changed.vs, /COPY a\.txt/)[0]?.starts, 1, "the later COPY re-ran");
    assert.ok(
      named(changed.vs, /ADD .*\/lm\.txt/).every((v) => v.cached),
      "the ADD before the change stays cached",
    );
  } finally {
    await srv.close();
    await removeTree(dir);
  }
});
