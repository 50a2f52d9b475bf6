// HTTPS with a private CA named by NODE_EXTRA_CA_CERTS, through bin/kiln as a user runs it: its
// launcher keeps the variable from Node's start-up (a cost every command paid) and kiln applies
// it when it opens its first HTTPS connection. A remote context and an ADD <https URL> are
// fetched from a server whose certificate that CA signed; without the variable the certificate
// is refused, in one error line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { kiln, removeTree, tempDir, writeContext } from "../fixtures/build-cli.js";
import { TestHttpServer } from "../fixtures/http-server.js";
import { makeCertificates } from "../fixtures/netns.js";

test("NODE_EXTRA_CA_CERTS is trusted for remote contexts and ADD <https URL>; without it the certificate is refused", async () => {
  const dir = await tempDir("https-extra-ca");
  const certs = await makeCertificates(dir, [{ name: "loopback", ip: "127.0.0.1" }]);
  const srv = await TestHttpServer.start(certs.server("loopback"));
  try {
    const file = srv.url("/file.txt");
    srv.files.set("/file.txt", { body: "over TLS\n" });
    srv.files.set("/Dockerfile", { body: `FROM scratch\nADD ${file} /f\n` });
    const root = join(dir, "root");
    const out = join(dir, "out");
    const ok = await kiln(["build", "--output", `type=local,dest=${out}`, srv.url("/Dockerfile")], {
      root,
      cwd: dir,
      launcher: true,
      env: { NODE_EXTRA_CA_CERTS: certs.ca },
    });
    assert.equal(ok.code, 0, ok.messages.join("\n"));
    assert.equal(await readFile(join(out, "f"), "utf8"), "over TLS\n");
    assert.deepEqual(
      srv.take().map((r) => `${r.method} ${r.path} ${r.status}`),
      ["GET /Dockerfile 200", "GET /file.txt 200"],
    );

    // the same downloads without the CA: refused, one line naming the URL and the reason
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM scratch\nADD ${file} /f\n`,
    });
    for (const [args, what] of [
      [[srv.url("/Dockerfile")], `cannot download the context ${srv.url("/Dockerfile")}`],
      [["."], `cannot download ${file}`],
    ] as const) {
      const r = await kiln(["build", ...args], {
        root,
        cwd: ctx,
        launcher: true,
        env: { NODE_EXTRA_CA_CERTS: "" },
      });
      assert.notEqual(r.code, 0);
      const all = r.messages.join("\n");
      assert.doesNotMatch(all, /^\s+at /m, `no stack trace:\n${all}`);
      const line = r.messages.find((l) => l.startsWith("error: ")) ?? "";
      assert.ok(line.includes(what), all);
      assert.match(line, /certificate/);
    }
  } finally {
    await srv.close();
    await removeTree(dir);
  }
});
