// ADD --checksum=<sha256> <URL> and failing downloads through the real `kiln build`, against a
// server on 127.0.0.1: a pinned and cached download needs no request, a wrong checksum names
// the URL and both digests, a 404 or an unreachable server is one clear error line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { kiln, removeTree, tempDir, writeContext, type KilnResult } from "../fixtures/build-cli.js";
import { TestHttpServer } from "../fixtures/http-server.js";

const BODY = "pinned content\n";
const RIGHT = "sha256:" + createHash("sha256").update(BODY).digest("hex");
const WRONG = "sha256:" + "0".repeat(64);

/** The `error:` line of a failed build; the build must have failed without a stack trace. */
function errorLine(r: KilnResult): string {
  assert.notEqual(r.code, 0, "the build failed");
  const all = r.messages.join("\n");
  assert.doesNotMatch(all, /^\s+at /m, `no stack trace:\n${all}`);
  const line = r.messages.find((l) => l.startsWith("error: "));
  assert.ok(line, `an error line:\n${all}`);
  return line;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => {
    s.close(() => {
      resolve();
    });
  });
  return port;
}

test("ADD --checksum: the right digest passes and a cached rebuild makes no request; a wrong one fails", async () => {
  const dir = await tempDir("add-http-sum");
  const srv = await TestHttpServer.start();
  try {
    srv.files.set("/pinned.txt", { body: BODY, etag: '"p"' });
    const url = srv.url("/pinned.txt");
    const root = join(dir, "root");
    const build = async (sum: string, n: number) => {
      const ctx = await writeContext(join(dir, `ctx${n}`), {
        Dockerfile: `FROM scratch\nADD --checksum=${sum} ${url} /p/\n`,
      });
      return kiln(["build", "--output", `type=local,dest=${join(dir, `out${n}`)}`, "."], {
        root,
        cwd: ctx,
      });
    };
    const ok = async (n: number) => {
      const r = await build(RIGHT, n);
      assert.equal(r.code, 0, r.messages.join("\n"));
      assert.equal(await readFile(join(dir, `out${n}`, "p", "pinned.txt"), "utf8"), BODY);
    };

    await ok(1);
    assert.equal(srv.take().length, 1);
    await ok(2);
    assert.deepEqual(srv.take(), [], "pinned and cached: no request at all");

    const bad = errorLine(await build(WRONG, 3));
    assert.ok(bad.includes(url), bad);
    assert.ok(bad.includes(WRONG) && bad.includes(RIGHT), `names both digests: ${bad}`);
    assert.match(bad, /checksum mismatch/);
  } finally {
    await srv.close();
    await removeTree(dir);
  }
});

test("ADD <URL>: a 404 and an unreachable server are one clear error line each", async () => {
  const dir = await tempDir("add-http-err");
  const srv = await TestHttpServer.start();
  try {
    const missing = srv.url("/missing.txt");
    const unreachable = `http://127.0.0.1:${await closedPort()}/file.txt`;
    for (const [url, re] of [
      [missing, /HTTP 404/],
      [unreachable, /ECONNREFUSED/],
    ] as const) {
      const ctx = await writeContext(join(dir, "ctx"), {
        Dockerfile: `FROM scratch\nADD ${url} /f\n`,
      });
      const line = errorLine(await kiln(["build", "."], { root: join(dir, "root"), cwd: ctx }));
      assert.ok(line.includes(`cannot download ${url}`), line);
      assert.match(line, re);
    }
    assert.deepEqual(
      srv.take().map((r) => `${r.path} ${r.status}`),
      ["/missing.txt 404"],
    );
  } finally {
    await srv.close();
    await removeTree(dir);
  }
});
