// The builder commands and `kiln build --builder` end to end through the CLI, against a kilnd on
// a unix socket (one daemon serving two configured nodes of one builder).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "../../src/registry/index.js";
import { testRegistry } from "../fixtures/env.js";
import { repoRoot, run } from "../fixtures/exec.js";
import { spawnIn, waitForLog, type HostProcess } from "../fixtures/netns.js";

let dir: string;
let daemon: HostProcess;
let sock: string;
const reg = testRegistry();

function kiln(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(repoRoot, "src/cli/main.ts"), ...args],
      {
        // the client's state dir (build history) stays in the test's directory too
        env: { ...process.env, KILN_CONFIG: join(dir, "config"), KILN_ROOT: join(dir, "client") },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => {
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-builder-cli-"));
  sock = join(dir, "kilnd.sock");
  daemon = spawnIn(
    undefined,
    [
      process.execPath,
      "--import",
      "tsx",
      join(repoRoot, "src/daemon/main.ts"),
      "--name",
      "local",
      "--addr",
      `unix://${sock}`,
      "--root",
      join(dir, "root"),
    ],
    join(dir, "kilnd.log"),
  );
  await waitForLog(daemon, /listening on unix:/);
  await mkdir(join(dir, "ctx"));
  await writeFile(
    join(dir, "ctx", "Dockerfile"),
    `FROM ${reg}/base/busybox:latest\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n`,
  );
  await writeFile(join(dir, "ctx", "hello.txt"), "hello\n");
});

after(async () => {
  daemon?.kill("SIGKILL");
  await daemon?.exited;
  await rm(dir, { recursive: true, force: true });
});

test("kiln builder create/ls/inspect/use, build --builder, rm", async () => {
  const endpoint = `unix://${sock}`;
  let r = await kiln([
    "builder",
    "create",
    "--name",
    "mb",
    "--node",
    "n1",
    "--platform",
    "linux/amd64",
    endpoint,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "mb");
  r = await kiln([
    "builder",
    "create",
    "--name",
    "mb",
    "--append",
    "--node",
    "n2",
    "--platform",
    "linux/arm64",
    endpoint,
  ]);
  assert.equal(r.code, 0, r.stderr);
  r = await kiln(["builder", "create", "--name", "mb", "--node", "n3", endpoint]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /builder mb exists/);

  r = await kiln(["builder", "ls"]);
  assert.match(r.stdout, /default \*/);
  assert.match(r.stdout, /n1\tunix:.*\tlinux\/amd64/);
  assert.match(r.stdout, /n2\tunix:.*\tlinux\/arm64/);

  r = await kiln(["builder", "inspect", "mb"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Status: running/);
  assert.match(r.stdout, /Native: linux\/amd64/);
  assert.match(r.stdout, /Load: 0/);

  r = await kiln(["builder", "use", "mb"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match((await kiln(["builder", "ls"])).stdout, /mb \*/);

  r = await kiln([
    "build",
    "--platform",
    "linux/amd64,linux/arm64",
    "-t",
    `${reg}/builder-cli:1`,
    "--push",
    "--progress",
    "rawjson",
    join(dir, "ctx"),
  ]);
  assert.equal(r.code, 0, r.stderr);
  const names = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { type: string; name?: string; platform?: string })
    .filter((e) => e.type === "vertex" && e.platform !== undefined)
    .map((e) => `${e.platform} ${e.name}`);
  assert.ok(
    names.some((n) => /^linux\/amd64 \[n1\]/.test(n)),
    names.join("\n"),
  );
  assert.ok(
    names.some((n) => /^linux\/arm64 \[n2\]/.test(n)),
    names.join("\n"),
  );
  const client = new RegistryClient();
  try {
    const m = await client.getManifest({ registry: reg, repository: "builder-cli" }, "1");
    assert.equal(m.document.kind, "index");
    if (m.document.kind === "index") {
      const all = m.document.index.manifests;
      const attests = all.filter(
        (d) => d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest",
      );
      const images = all.filter((d) => !attests.includes(d));
      assert.deepEqual(
        images.map((d) => d.platform?.architecture),
        ["amd64", "arm64"],
      );
      // each node's default provenance attestation lands in the merged index
      assert.deepEqual(
        attests.map((d) => d.annotations?.["vnd.docker.reference.digest"]).sort(),
        images.map((d) => d.digest).sort(),
      );
    }
  } finally {
    client.close();
  }

  r = await kiln(["builder", "create", "--name", "plain", "tcp://127.0.0.1:9"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /WARNING: node plain0 is reached over plain TCP/);

  await kiln(["builder", "use", "default"]);
  r = await kiln(["builder", "rm", "mb"]);
  assert.equal(r.code, 0, r.stderr);
  const file = JSON.parse(await readFile(join(dir, "config", "builders.json"), "utf8")) as {
    current?: string;
    builders: { name: string }[];
  };
  assert.equal(file.current, undefined);
  assert.deepEqual(
    file.builders.map((b) => b.name),
    ["plain"],
  );
});

test("kilnd refuses to serve TCP without TLS unless told --insecure", async () => {
  const p = spawnIn(
    undefined,
    [
      process.execPath,
      "--import",
      "tsx",
      join(repoRoot, "src/daemon/main.ts"),
      "--addr",
      "tcp://127.0.0.1:0",
      "--root",
      join(dir, "root2"),
    ],
    join(dir, "kilnd-notls.log"),
  );
  await waitForLog(p, /refusing to serve tcp:\/\/127\.0\.0\.1:0 without TLS/);
  assert.equal(await p.exited, "exit 1");
});

test("remote: docker-image:// contexts resolve on the node; kilnd grants only its entitlements", async () => {
  const ctx = join(dir, "ctx-remote");
  await mkdir(ctx);
  // `base` exists nowhere: the named context says it is an image
  await writeFile(
    join(ctx, "Dockerfile"),
    "FROM base\nRUN grep '^Seccomp:' /proc/self/status > /sandboxed\n",
  );
  await writeFile(
    join(ctx, "insecure.Dockerfile"),
    "FROM base\nRUN --security=insecure grep '^Seccomp:' /proc/self/status > /insecure\n",
  );
  const image = ["--build-context", `base=docker-image://${reg}/base/busybox:latest`];
  const out = join(dir, "out-remote");
  let r = await kiln(["builder", "create", "--name", "plain-node", `unix://${sock}`]);
  assert.equal(r.code, 0, r.stderr);
  const build = (builder: string, ...args: string[]) =>
    kiln(["build", "--builder", builder, "--platform", "linux/amd64", ...image, ...args, ctx]);
  r = await build("plain-node", "-o", `type=local,dest=${out}`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(join(out, "sandboxed"), "utf8"), "Seccomp:\t2\n");

  const insecure = ["--allow", "security.insecure", "-f", join(ctx, "insecure.Dockerfile")];
  r = await build("plain-node", ...insecure, "-o", `type=local,dest=${out}`);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /granting entitlement security\.insecure is not allowed by build daemon configuration/,
  );
  assert.match(r.stderr, /--allow-insecure-entitlement security\.insecure/);

  const sock2 = join(dir, "kilnd-insecure.sock");
  const granting = spawnIn(
    undefined,
    [
      process.execPath,
      "--import",
      "tsx",
      join(repoRoot, "src/daemon/main.ts"),
      "--addr",
      `unix://${sock2}`,
      "--root",
      join(dir, "root"),
      "--allow-insecure-entitlement",
      "security.insecure",
    ],
    join(dir, "kilnd-insecure.log"),
  );
  try {
    await waitForLog(granting, /listening on unix:/);
    r = await kiln(["builder", "create", "--name", "granting-node", `unix://${sock2}`]);
    assert.equal(r.code, 0, r.stderr);
    // the node's grant is not the client's: without --allow the Dockerfile line is refused
    r = await build("granting-node", "-f", join(ctx, "insecure.Dockerfile"));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /insecure\.Dockerfile:2:5: security\.insecure is not allowed/);
    r = await build("granting-node", ...insecure, "-o", `type=local,dest=${out}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(out, "insecure"), "utf8"), "Seccomp:\t0\n");
  } finally {
    granting.kill("SIGKILL");
    await granting.exited;
  }
});

test("remote: an oci-layout:// context travels as its layout directory to the node", async () => {
  const ctx = join(dir, "ctx-layout");
  await mkdir(ctx);
  await writeFile(join(ctx, "Dockerfile"), "FROM base\nRUN uname -m > /arch\n");
  const layout = join(dir, "layout");
  await run("skopeo", [
    "copy",
    "--quiet",
    "--all",
    "--src-tls-verify=false",
    `docker://${reg}/base/busybox:latest`,
    `oci:${layout}:bb`,
  ]);
  let r = await kiln(["builder", "create", "--name", "layout-node", `unix://${sock}`]);
  assert.equal(r.code, 0, r.stderr);
  const out = join(dir, "out-layout");
  r = await kiln([
    "build",
    "--builder",
    "layout-node",
    "--platform",
    "linux/amd64,linux/arm64",
    "--build-context",
    `base=oci-layout://${layout}:bb`,
    "-o",
    `type=local,dest=${out}`,
    ctx,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(join(out, "linux_amd64", "arch"), "utf8"), "x86_64\n");
  assert.equal(await readFile(join(out, "linux_arm64", "arch"), "utf8"), "aarch64\n");
  // a digest the layout lacks fails on the client, before anything is sent
  r = await kiln([
    "build",
    "--builder",
    "layout-node",
    "--build-context",
    `base=oci-layout://${layout}@sha256:${"0".repeat(64)}`,
    ctx,
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /build context "base" .*0{64} is not in the layout/);
});
