// `kiln build -`: the context as a tar on standard input, or a lone Dockerfile (issue 8).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  collect,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../../src/process/index.js";

const reg = testRegistry();

async function buildFromStdin(dir: string, input: Buffer, out: string): Promise<void> {
  const child = await startKiln(
    ["build", "--progress", "quiet", "-o", `type=local,dest=${out}`, "-"],
    {
      root: join(dir, "root"),
      cwd: dir,
      stdin: "pipe",
    },
  );
  child.stdin!.end(input);
  const r = await collect(child);
  assert.equal(r.code, 0, r.stderr);
}

test("a context tar on stdin, and a lone Dockerfile on stdin", async () => {
  const dir = await tempDir("stdin");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox\nCOPY msg.txt /msg.txt\n`,
      "msg.txt": "from the tar\n",
    });
    const tar = (await run("tar", ["-C", ctx, "-czf", "-", "."])).stdout;
    await buildFromStdin(dir, tar, join(dir, "out1"));
    assert.equal(await readFile(join(dir, "out1", "msg.txt"), "utf8"), "from the tar\n");
    await buildFromStdin(
      dir,
      Buffer.from(`FROM ${reg}/base/busybox\nRUN echo lone > /lone\n`),
      join(dir, "out2"),
    );
    assert.equal(await readFile(join(dir, "out2", "lone"), "utf8"), "lone\n");
  } finally {
    await removeTree(dir);
  }
});
