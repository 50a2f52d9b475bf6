// kiln killed with SIGKILL in the middle of a RUN leaves a running container and mounts behind;
// the next build in the same state directory clears them and completes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  collect,
  kilnOk,
  mountsBelow,
  removeTree,
  runcContainers,
  startKiln,
  stderrSays,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();

/** Host pids of processes whose argv is exactly `argv` (containers' processes included). */
async function processesRunning(argv: string[]): Promise<number[]> {
  const want = argv.join("\0") + "\0";
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline === want) pids.push(Number(entry));
  }
  return pids;
}

test("after kiln is SIGKILLed mid-RUN, the next build cleans up and completes", async () => {
  const dir = await tempDir("crash");
  try {
    // an unusual duration, to find this very sleep among the machine's processes
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
ARG WAIT=1237
RUN --mount=type=secret,id=tok echo start && sleep $WAIT && echo done > /done
`,
    });
    const root = join(dir, "root");
    const opts = { root, cwd: ctx };
    const secret = `kiln-crash-secret-${randomBytes(16).toString("hex")}`;
    const secretFile = join(dir, "tok.txt");
    await writeFile(secretFile, secret);
    const secretFlag = ["--secret", `id=tok,src=${secretFile}`];

    const child = await startKiln(["build", ...secretFlag, "--progress", "rawjson", "."], opts);
    const result = collect(child);
    await stderrSays(child, /"type":"log".*"data":"start/);
    child.kill("SIGKILL");
    const killed = await result;
    assert.equal(
      killed.signal,
      "SIGKILL",
      `kiln was killed mid-RUN: ${killed.messages.join("\n")}`,
    );

    const second = await kilnOk(["build", ...secretFlag, "--build-arg", "WAIT=0", "."], opts);
    const step = vertexRecords(second.events).find((v) => v.name.includes("echo start"));
    assert.equal(step?.starts, 1);
    assert.equal(step.error, undefined);

    assert.deepEqual(await mountsBelow(root), [], "no mounts left in the state directory");
    assert.deepEqual(await runcContainers(root), [], "no runc containers left");
    assert.deepEqual(await processesRunning(["sleep", "1237"]), [], "the killed RUN is gone");
    const leftover = await run("sh", [
      "-c",
      'grep -rlaF -D skip -- "$1" /dev/shm || true',
      "sh",
      secret,
    ]);
    assert.equal(leftover, "", "the killed RUN's secret file was removed");
  } finally {
    await removeTree(dir);
  }
});
