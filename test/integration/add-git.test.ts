// ADD <git URL> (issue 15) through the real `kiln build`, from a repository served by
// `git daemon` on loopback: a tag's subdir, --keep-git-dir, --chown with --checksum on an
// annotated tag, for two platforms from one fetch; the image is checked with skopeo, umoci,
// git and runc. The cache follows the commit: a new commit on the branch re-runs the ADD of the
// branch, the pinned tag stays cached. A wrong --checksum, an unknown ref and an unreachable
// server fail with the Dockerfile line.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, lstat, readFile, readlink, symlink } from "node:fs/promises";
import { join } from "node:path";
import {
  kiln,
  kilnOk,
  named,
  removeTree,
  runInBundle,
  tempDir,
  testRegistry,
  unpackPlatform,
  vertexRecords,
  writeContext,
} from "../fixtures/build-cli.js";
import { git, TestGitServer } from "../fixtures/git-server.js";
import { run } from "../../src/process/index.js";
import { freePort } from "../fixtures/registry.js";

const reg = testRegistry();
let dir: string;
let work: string;
let server: TestGitServer;
let url: string;
let v1: string;
let v2: string;

before(async () => {
  dir = await tempDir("add-git");
  work = join(dir, "work");
  await writeContext(work, {
    "README.md": "readme\n",
    "sub/hello.txt": "hello v1\n",
    "sub/run.sh": "#!/bin/sh\necho ran\n",
  });
  await chmod(join(work, "sub", "run.sh"), 0o755);
  await symlink("hello.txt", join(work, "sub", "link"));
  await git(work, "init", "-q", "-b", "main");
  await git(work, "add", ".");
  await git(work, "commit", "-q", "-m", "v1");
  await git(work, "tag", "v1");
  await git(work, "tag", "-a", "rel", "-m", "release");
  v1 = await git(work, "rev-parse", "HEAD");
  await writeContext(work, { "sub/hello.txt": "hello v2\n" });
  await git(work, "commit", "-q", "-am", "v2");
  v2 = await git(work, "rev-parse", "HEAD");
  server = await TestGitServer.start(dir);
  await server.publish(work, "repo");
  url = server.url("repo");
});

after(async () => {
  await server?.stop();
  await removeTree(dir);
});

interface Index {
  manifests: { digest: string; annotations?: Record<string, string> }[];
  layers?: { digest: string }[];
}

/** The resolvedDependencies of the first provenance attestation in an OCI layout directory. */
async function provenanceMaterials(layout: string): Promise<{ uri: string; digest: object }[]> {
  const blob = async <T>(digest: string): Promise<T> =>
    JSON.parse(await readFile(join(layout, "blobs", "sha256", digest.slice(7)), "utf8")) as T;
  const top = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as Index;
  const images = await blob<Index>(top.manifests[0]!.digest);
  const att = images.manifests.find(
    (m) => m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest",
  );
  assert.ok(att, "an attestation manifest");
  const layer = (await blob<Index>(att.digest)).layers![0]!;
  const statement = await blob<{
    predicate: { buildDefinition: { resolvedDependencies: { uri: string; digest: object }[] } };
  }>(layer.digest);
  return statement.predicate.buildDefinition.resolvedDependencies;
}

const opts = () => ({ root: join(dir, "root"), cwd: dir });

test("ADD <git URL> for two platforms: one fetch, subdir, .git kept on request, --chown, --checksum", async () => {
  const ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox
ADD ${url}#v1:sub /app
ADD --keep-git-dir=true ${url} /src
ADD --chown=1:2 --checksum=${v1.slice(0, 12)} ${url}?tag=rel /owned/
ADD ${url}#${v1}:sub /bysha
RUN uname -m > /arch && cat /app/hello.txt /src/sub/hello.txt > /both
`,
  });
  const out = join(dir, "img");
  const r = await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "--provenance=mode=min",
      "-o",
      `type=oci,dest=${out},tar=false`,
      ctx,
    ],
    opts(),
  );
  const vs = vertexRecords(r.events);
  for (const source of [/#v1:sub /, /repo\.git \(/, /\?tag=rel /]) {
    const fetched = named(vs, source).filter((v) => v.name.startsWith("git://"));
    assert.equal(fetched.length, 1, `one git source for both platforms: ${JSON.stringify(vs)}`);
    assert.equal(fetched[0]!.starts, 1);
  }
  assert.equal(named(vs, /ADD .*#v1:sub \/app$/).length, 2, "an ADD per platform");

  const arm = await unpackPlatform(
    `oci:${out}`,
    { architecture: "arm64" },
    dir,
    join(dir, "bundle-arm64"),
  );
  const read = (p: string) => readFile(join(arm, p), "utf8");
  assert.equal(await read("arch"), "aarch64\n");
  assert.equal(await read("both"), "hello v1\nhello v2\n");
  assert.equal(await read("bysha/hello.txt"), "hello v1\n");
  // the subdir's contents at dest, modes as git checks them out, no .git
  const app = await lstat(join(arm, "app"));
  assert.equal(app.mode & 0o7777, 0o755);
  assert.equal((await lstat(join(arm, "app", "run.sh"))).mode & 0o7777, 0o755);
  assert.equal((await lstat(join(arm, "app", "hello.txt"))).mode & 0o7777, 0o644);
  assert.equal(await readlink(join(arm, "app", "link")), "hello.txt");
  await assert.rejects(lstat(join(arm, "app", ".git")));
  await assert.rejects(lstat(join(arm, "app", "README.md")));
  // .git kept: git itself sees a clean checkout of the branch's head, origin without secrets
  const src = join(arm, "src");
  assert.equal(await git(src, "rev-parse", "HEAD"), v2);
  assert.equal(await git(src, "rev-parse", "refs/heads/main"), v2);
  assert.equal(await git(src, "status", "--porcelain"), "");
  assert.equal(await git(src, "remote", "get-url", "origin"), url);
  await assert.rejects(lstat(join(src, ".git", "FETCH_HEAD")));
  // --chown on every file and on dest; the annotated tag is its commit's tree
  for (const p of ["owned", "owned/README.md", "owned/sub/hello.txt", "owned/sub/link"]) {
    const st = await lstat(join(arm, p));
    assert.deepEqual([st.uid, st.gid], [1, 2], p);
  }
  assert.equal(await read("owned/sub/hello.txt"), "hello v1\n");
  await assert.rejects(lstat(join(arm, "owned", ".git")));

  // provenance: BuildKit's git materials (remote#ref as written; an annotated tag by its object)
  const rel = await git(work, "rev-parse", "rel");
  assert.deepEqual(
    (await provenanceMaterials(out)).filter((m) => m.uri.startsWith("git://")),
    [
      { uri: url, digest: { sha1: v2 } },
      { uri: `${url}#${v1}`, digest: { sha1: v1 } },
      { uri: `${url}#refs/tags/rel`, digest: { sha1: rel } },
      { uri: `${url}#v1`, digest: { sha1: v1 } },
    ],
  );

  // the amd64 image runs and sees the same files
  const amd = join(dir, "bundle-amd64");
  await unpackPlatform(`oci:${out}`, { architecture: "amd64" }, dir, amd);
  assert.equal(await runInBundle(amd, ["cat", "/arch", "/app/hello.txt"]), "x86_64\nhello v1\n");
});

test("the cache follows the commit: a new commit on the branch re-runs its ADD, a tag stays cached", async () => {
  const ctx = await writeContext(join(dir, "ctx-cache"), {
    Dockerfile: `FROM ${reg}/base/busybox
ADD ${url}#v1 /pinned
ADD ${url}#main /head
RUN cat /pinned/sub/hello.txt /head/sub/hello.txt > /seen
`,
  });
  let n = 0;
  const build = async () => {
    const out = join(dir, `out-cache-${++n}`);
    const r = await kilnOk(["build", "-o", `type=local,dest=${out}`, ctx], opts());
    return { vs: vertexRecords(r.events), seen: await readFile(join(out, "seen"), "utf8") };
  };
  const first = await build();
  assert.equal(first.seen, "hello v1\nhello v2\n");
  const again = await build();
  assert.ok(
    again.vs.length >= 5 && again.vs.every((v) => v.cached && v.starts === 0),
    `everything is cached: ${JSON.stringify(again.vs)}`,
  );

  await writeContext(work, { "sub/hello.txt": "hello v3\n" });
  await git(work, "commit", "-q", "-am", "v3");
  await server.publish(work, "repo");
  const moved = await build();
  assert.equal(moved.seen, "hello v1\nhello v3\n");
  const ran = (re: RegExp) => named(moved.vs, re).map((v) => v.starts);
  assert.deepEqual(ran(/^git:\/\/.*#main /), [1], "the branch is fetched again");
  assert.deepEqual(ran(/ADD .*#main \/head$/), [1]);
  assert.deepEqual(ran(/RUN cat/), [1]);
  assert.ok(
    named(moved.vs, /#v1/).every((v) => v.cached && v.starts === 0),
    `the tag stays cached: ${JSON.stringify(moved.vs)}`,
  );
});

test("ADD <git URL> errors name the Dockerfile line: wrong --checksum, unknown ref, no server", async () => {
  const cases: [string, RegExp][] = [
    [`ADD --checksum=0000000 ${url}#v1 /x`, new RegExp(`#v1 is commit ${v1}, not 0000000`)],
    [`ADD ${url}#nosuch /x`, /has no branch or tag "nosuch"/],
    [`ADD git://127.0.0.1:${await freePort()}/repo.git /x`, /cannot list the refs of git:\/\//],
    [`ADD ${url}#v1:nothere /x`, /nothere is not a directory/],
  ];
  for (const [line, why] of cases) {
    const ctx = await writeContext(join(dir, "ctx-error"), {
      Dockerfile: `FROM ${reg}/base/busybox\n${line}\n`,
    });
    const r = await kiln(["build", ctx], opts());
    assert.notEqual(r.code, 0, line);
    const text = r.messages.join("\n");
    assert.match(text, why, text);
    assert.match(text, /Dockerfile:2\)/, text);
    assert.doesNotMatch(text, /\n\s+at /, "no stack trace");
  }
});

test("ADD of an http(s) .git URL over smart HTTP authenticates with the GIT_AUTH_TOKEN secret, which lands nowhere", async () => {
  const token = "t0ken-4a1f9c";
  await server.startHttp(token);
  const httpUrl = server.httpUrl("repo");
  const ctx = await writeContext(join(dir, "ctx-http"), {
    Dockerfile: `FROM ${reg}/base/busybox\nADD --keep-git-dir=true ${httpUrl}#v1 /r\n`,
  });
  const out = join(dir, "out-http");
  const r = await kilnOk(
    [
      "build",
      "--secret",
      "id=GIT_AUTH_TOKEN,env=KILN_TEST_GIT_TOKEN",
      "-o",
      `type=local,dest=${out}`,
      ctx,
    ],
    { ...opts(), env: { KILN_TEST_GIT_TOKEN: token } },
  );
  assert.equal(await readFile(join(out, "r", "sub", "hello.txt"), "utf8"), "hello v1\n");
  assert.equal(await git(join(out, "r"), "rev-parse", "HEAD"), v1);
  assert.equal(await git(join(out, "r"), "remote", "get-url", "origin"), httpUrl);
  const grep = await run("grep", ["-rl", token, out, join(dir, "root")]);
  assert.equal(
    grep.exitCode,
    1,
    `the token is in no file of the output or the state: ${grep.stdout.toString()}`,
  );
  assert.ok(!JSON.stringify(r).includes(token), "nor in kiln's output");

  const denied = await kiln(["build", ctx], opts());
  assert.notEqual(denied.code, 0);
  const text = denied.messages.join("\n");
  assert.match(text, /cannot list the refs of http:\/\/127\.0\.0\.1:\d+\/repo\.git/, text);
  assert.match(text, /Dockerfile:2\)/, text);
});
