// Remote build contexts (issue 15): a git repository served by `git daemon` and a tar served
// over plain HTTP, both on loopback, as the main context and as named contexts, built for
// several platforms.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { readFile, readdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import {
  kiln,
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { git, TestGitServer } from "../fixtures/git-server.js";
import { run } from "../../src/process/index.js";

const reg = testRegistry();
let dir: string;
let gitServer: TestGitServer;
let http: Server;
let gitUrl: string;
let httpBase: string;
let v1Commit: string;

before(async () => {
  dir = await tempDir("remote-context");
  const work = join(dir, "work");
  await writeContext(work, {
    Dockerfile: `FROM ${reg}/base/busybox\nCOPY msg.txt /msg.txt\nRUN uname -m > /arch\n`,
    "msg.txt": "root v1\n",
    "sub/Dockerfile": `FROM ${reg}/base/busybox\nCOPY . /sub/\n`,
    "sub/msg.txt": "sub v1\n",
  });
  await git(work, "init", "-q", "-b", "main");
  await git(work, "add", ".");
  await git(work, "commit", "-q", "-m", "v1");
  await git(work, "tag", "v1");
  v1Commit = await git(work, "rev-parse", "HEAD");
  await writeContext(work, { "msg.txt": "root v2\n" });
  await git(work, "commit", "-q", "-am", "v2");
  gitServer = await TestGitServer.start(dir);
  await gitServer.publish(work, "repo");
  gitUrl = gitServer.url("repo");
  // a gzip'd tar context and a lone Dockerfile over plain HTTP
  const tarCtx = await writeContext(join(dir, "tarctx"), {
    Dockerfile: `FROM ${reg}/base/busybox\nCOPY hello.txt /hello.txt\n`,
    "hello.txt": "from the tarball\n",
  });
  const tgz = (await run("tar", ["-C", tarCtx, "-czf", "-", "."])).stdout;
  http = createServer((req, res) => {
    if (req.url === "/ctx.tar.gz") res.end(tgz);
    else if (req.url === "/Dockerfile")
      res.end(`FROM ${reg}/base/busybox\nRUN echo lone > /lone\n`);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => http.listen(0, "127.0.0.1", ok));
  httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

after(async () => {
  await gitServer?.stop();
  await new Promise<void>((ok) => {
    http.close(() => {
      ok();
    });
  });
  await removeTree(dir);
});

const opts = () => ({ root: join(dir, "root"), cwd: dir });
const PLATFORMS = "linux/amd64,linux/arm64,linux/arm/v7";

test("a git context (git daemon): the default branch, a tag with a subdir, for three platforms", async () => {
  const out = join(dir, "out-git");
  await kilnOk(
    [
      "build",
      "--progress",
      "quiet",
      "--platform",
      PLATFORMS,
      "-o",
      `type=local,dest=${out}`,
      gitUrl,
    ],
    opts(),
  );
  assert.deepEqual((await readdir(out)).sort(), ["linux_amd64", "linux_arm64", "linux_arm_v7"]);
  for (const [p, arch] of [
    ["linux_amd64", "x86_64"],
    ["linux_arm64", "aarch64"],
    ["linux_arm_v7", "armv7l"],
  ] as const) {
    assert.equal(await readFile(join(out, p, "msg.txt"), "utf8"), "root v2\n");
    assert.equal(await readFile(join(out, p, "arch"), "utf8"), `${arch}\n`);
  }
  const sub = join(dir, "out-sub");
  await kilnOk(
    ["build", "--progress", "quiet", "-o", `type=local,dest=${sub}`, `${gitUrl}#v1:sub`],
    opts(),
  );
  assert.equal(await readFile(join(sub, "sub", "msg.txt"), "utf8"), "sub v1\n");
  // -f names a file of the remote context; .git stays only when asked for
  const kept = join(dir, "out-kept");
  await kilnOk(
    [
      "build",
      "--progress",
      "quiet",
      "-f",
      "sub/Dockerfile",
      "--build-arg",
      "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
      "-o",
      `type=local,dest=${kept}`,
      `${gitUrl}#${v1Commit}`,
    ],
    opts(),
  );
  assert.equal(await readFile(join(kept, "sub", "sub", "msg.txt"), "utf8"), "sub v1\n");
  assert.match(await readFile(join(kept, "sub", ".git", "HEAD"), "utf8"), new RegExp(v1Commit));
});

test("named contexts from git and from an http tarball; a lone Dockerfile over http", async () => {
  const ctx = await writeContext(join(dir, "named"), {
    Dockerfile: `FROM ${reg}/base/busybox\nCOPY --from=repo msg.txt /repo-msg\nCOPY --from=tarball hello.txt /hello\n`,
  });
  const out = join(dir, "out-named");
  await kilnOk(
    [
      "build",
      "--progress",
      "quiet",
      "--platform",
      "linux/amd64,linux/arm64",
      "--build-context",
      `repo=${gitUrl}#v1`,
      "--build-context",
      `tarball=${httpBase}/ctx.tar.gz`,
      "-o",
      `type=local,dest=${out}`,
      ctx,
    ],
    opts(),
  );
  for (const p of ["linux_amd64", "linux_arm64"]) {
    assert.equal(await readFile(join(out, p, "repo-msg"), "utf8"), "root v1\n");
    assert.equal(await readFile(join(out, p, "hello"), "utf8"), "from the tarball\n");
  }
  const tarOut = join(dir, "out-tar");
  await kilnOk(
    ["build", "--progress", "quiet", "-o", `type=local,dest=${tarOut}`, `${httpBase}/ctx.tar.gz`],
    opts(),
  );
  assert.equal(await readFile(join(tarOut, "hello.txt"), "utf8"), "from the tarball\n");
  const lone = join(dir, "out-lone");
  await kilnOk(
    ["build", "--progress", "quiet", "-o", `type=local,dest=${lone}`, `${httpBase}/Dockerfile`],
    opts(),
  );
  assert.equal(await readFile(join(lone, "lone"), "utf8"), "lone\n");
});

test("remote context errors name the source and the fix", async () => {
  const cases: [string[], RegExp][] = [
    [[`${gitUrl}#no-such-branch`], /no-such-branch/],
    [[`${gitUrl}?ref=v1&checksum=0000000`], /is commit [0-9a-f]{40}, not 0000000/],
    [[`${gitUrl}#v1:nothere`], /nothere is not a directory/],
    [[`${httpBase}/missing.tar`], /HTTP 404/],
  ];
  for (const [args, why] of cases) {
    const r = await kiln(["build", "--progress", "quiet", ...args], opts());
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr, why, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
});
