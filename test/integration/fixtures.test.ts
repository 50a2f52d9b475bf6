// The shared fixtures are real: the registry serves a six-platform busybox index, and every
// platform's image runs under runc (foreign ones through QEMU binfmt).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testRegistry } from "../fixtures/env.js";
import { run } from "../fixtures/exec.js";
import { readAccessLog, startRegistry } from "../fixtures/registry.js";

const EXPECTED = [
  { tag: "amd64", platform: "linux/amd64", uname: "x86_64" },
  { tag: "arm64", platform: "linux/arm64/v8", uname: "aarch64" },
  { tag: "armv7", platform: "linux/arm/v7", uname: "armv7l" },
  { tag: "ppc64le", platform: "linux/ppc64le", uname: "ppc64le" },
  { tag: "s390x", platform: "linux/s390x", uname: "s390x" },
  { tag: "riscv64", platform: "linux/riscv64", uname: "riscv64" },
];

interface IndexJson {
  mediaType: string;
  manifests: { platform: { os: string; architecture: string; variant?: string } }[];
}

describe("base images in the test registry", () => {
  test("base/busybox:latest is an OCI index of exactly the six platforms", async () => {
    const raw = await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${testRegistry()}/base/busybox:latest`,
    ]);
    const index = JSON.parse(raw) as IndexJson;
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    const platforms = index.manifests.map((m) =>
      [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join("/"),
    );
    assert.deepEqual(platforms.sort(), EXPECTED.map((e) => e.platform).sort());
  });

  for (const e of EXPECTED) {
    test(`base/busybox:${e.tag} runs under runc and reports ${e.uname}`, async () => {
      const work = await mkdtemp(join(tmpdir(), "kiln-fixture-run-"));
      const runcRoot = join(work, "runc");
      const id = `kiln-fixture-${e.tag}-${randomBytes(4).toString("hex")}`;
      try {
        await run("skopeo", [
          "copy",
          "--quiet",
          "--src-tls-verify=false",
          `docker://${testRegistry()}/base/busybox:${e.tag}`,
          `oci:${join(work, "image")}:${e.tag}`,
        ]);
        const bundle = join(work, "bundle");
        await run("umoci", ["unpack", "--image", `${join(work, "image")}:${e.tag}`, bundle]);
        const configPath = join(bundle, "config.json");
        const spec = JSON.parse(await readFile(configPath, "utf8")) as {
          process: { args: string[]; terminal: boolean };
        };
        spec.process.args = ["uname", "-m"];
        spec.process.terminal = false;
        await writeFile(configPath, JSON.stringify(spec));
        const out = await run("runc", ["--root", runcRoot, "run", "--bundle", bundle, id]);
        assert.equal(out.trim(), e.uname);
      } finally {
        await run("runc", ["--root", runcRoot, "delete", "--force", id]).catch(() => undefined);
        await rm(work, { recursive: true, force: true });
      }
    });
  }
});

describe("startRegistry", () => {
  test("htpasswd auth turns away anonymous clients, serves credentialed ones, and logs both", async () => {
    const reg = await startRegistry({
      auth: "htpasswd",
      htpasswd: { user: "alice", password: "s3cret" },
    });
    try {
      const anonymous = await fetch(`http://${reg.host}/v2/`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Basic realm=/);
      const authorized = await fetch(`http://${reg.host}/v2/`, {
        headers: { authorization: `Basic ${Buffer.from("alice:s3cret").toString("base64")}` },
      });
      assert.equal(authorized.status, 200);
      const log = (await readAccessLog(reg.logFile)).filter((l) => l.path === "/v2/");
      // The readiness probe is one more anonymous GET /v2/ before ours.
      assert.deepEqual(
        log.slice(-2).map((l) => [l.method, l.status]),
        [
          ["GET", 401],
          ["GET", 200],
        ],
      );
    } finally {
      await reg.stop();
    }
    await assert.rejects(fetch(`http://${reg.host}/v2/`));
  });
});
