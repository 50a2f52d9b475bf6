// `--output type=local` and `type=tar` (and `-o -`) from the real CLI: the final file trees,
// split per platform as BuildKit does (`linux_amd64/`), checked on disk and with tar.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { run } from "../fixtures/exec.js";
import {
  kiln,
  kilnOk,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";

const reg = testRegistry();
let dir = "";
let ctx = "";
const opts = (env?: Record<string, string>) => ({ root: join(dir, "root"), cwd: dir, env });

before(async () => {
  dir = await tempDir("outputs-files");
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox:latest
COPY hello.txt /app/hello.txt
RUN mkdir -p /data && uname -m > /data/arch
`,
    "hello.txt": "hello\n",
  });
});
after(() => removeTree(dir));

test("type=local with two platforms: one os_arch directory per platform", async () => {
  const out = join(dir, "local");
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=local,dest=${out}`,
      "--build-arg",
      "SOURCE_DATE_EPOCH=86400",
      ctx,
    ],
    opts(),
  );
  assert.deepEqual((await readdir(out)).sort(), ["linux_amd64", "linux_arm64"]);
  assert.equal(await readFile(join(out, "linux_amd64", "data", "arch"), "utf8"), "x86_64\n");
  assert.equal(await readFile(join(out, "linux_arm64", "data", "arch"), "utf8"), "aarch64\n");
  assert.equal(await readFile(join(out, "linux_arm64", "app", "hello.txt"), "utf8"), "hello\n");
  assert.ok((await stat(join(out, "linux_arm64", "bin", "busybox"))).isFile());
  // SOURCE_DATE_EPOCH clamps what the build wrote (and the directories it touched)
  for (const p of ["data/arch", "data", "app/hello.txt"]) {
    const st = await stat(join(out, "linux_amd64", p));
    assert.ok(st.mtimeMs <= 86400_000, `${p} mtime ${st.mtime.toISOString()}`);
  }
});

test("a bare -o DIR is type=local; one platform is not split", async () => {
  const out = join(dir, "plain");
  await kilnOk(["build", "--platform", "linux/arm64", "-o", out, ctx], opts());
  assert.equal(await readFile(join(out, "data", "arch"), "utf8"), "aarch64\n");
});

test("-o - writes the root filesystem as a tar to stdout (and -q prints nothing over it)", async () => {
  const file = join(dir, "stdout.tar");
  const child = await startKiln(
    ["build", "-q", "--platform", "linux/amd64", "-o", "-", "--progress", "quiet", ctx],
    opts(),
  );
  const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
  await pipeline(child.stdout!, createWriteStream(file));
  assert.equal(await closed, 0);
  const entries = (await run("tar", ["-tf", file])).split("\n");
  assert.ok(entries.includes("data/arch"), entries.slice(0, 20).join(" "));
  assert.ok(entries.includes("bin/busybox"));
  assert.equal(await run("tar", ["-xOf", file, "data/arch"]), "x86_64\n");
});

test("type=tar with two platforms: entries under linux_amd64/ and linux_arm64/", async () => {
  const file = join(dir, "two.tar");
  await kilnOk(
    ["build", "--platform", "linux/amd64,linux/arm64", "-o", `type=tar,dest=${file}`, ctx],
    opts(),
  );
  const entries = (await run("tar", ["-tf", file])).split("\n");
  assert.ok(entries.includes("linux_amd64/data/arch"), entries.slice(0, 10).join(" "));
  assert.equal(await run("tar", ["-xOf", file, "linux_arm64/data/arch"]), "aarch64\n");
});

test("platform-split=false with two platforms is refused before building", async () => {
  const r = await kiln(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=local,dest=${join(dir, "nosplit")},platform-split=false`,
      ctx,
    ],
    opts(),
  );
  assert.equal(r.code, 1);
  assert.match(r.messages.join("\n"), /platform-split=false cannot hold 2 platforms/);
  assert.equal(r.events.filter((e) => e.type === "vertex").length, 0);
});
