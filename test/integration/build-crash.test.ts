// kiln killed with SIGKILL in the middle of a RUN leaves a running container and mounts behind;
// the next build in the same state directory clears them and completes. Interrupted at the
// terminal (SIGINT to its whole process group), it cleans up itself on the way out.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
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

/** The process group of a process (the fifth field of /proc/<pid>/stat). */
async function processGroup(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

/** Pids of the processes whose parent is `parent`, with their argv. */
async function childrenOf(parent: number): Promise<{ pid: number; argv: string[] }[]> {
  const out: { pid: number; argv: string[] }[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // the field after the parenthesized command name: state, then ppid
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid !== parent) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    out.push({ pid: Number(entry), argv: cmdline.split("\0").filter((a) => a !== "") });
  }
  return out;
}

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

test("Ctrl-C at the terminal mid-RUN: kiln unmounts, removes the container and ends by SIGINT", async () => {
  const dir = await tempDir("interrupt");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox\nRUN echo start && sleep 1239\n`,
    });
    const root = join(dir, "root");
    const child = await startKiln(["build", "--progress", "rawjson", "."], {
      root,
      cwd: ctx,
      ownGroup: true,
    });
    const result = collect(child);
    await stderrSays(child, /"type":"log".*"data":"start/);
    // kiln's mount helper must outlive the Ctrl-C (kiln unmounts through it on the way out):
    // it is in a process group of its own
    const helpers = (await childrenOf(child.pid!)).filter((c) => c.argv[0] === "perl");
    assert.equal(helpers.length, 1, "one mount helper");
    const helper = helpers[0]!.pid;
    assert.notEqual(await processGroup(helper), child.pid, "the helper has its own group");
    process.kill(-child.pid!, "SIGINT");
    const r = await result;
    // the signal re-raised after the cleanups: the status a shell shows as 130
    assert.equal(r.signal, "SIGINT", r.messages.join("\n"));
    assert.deepEqual(await mountsBelow(root), [], "no mounts left in the state directory");
    assert.deepEqual(await runcContainers(root), [], "no runc containers left");
    assert.deepEqual(await processesRunning(["sleep", "1239"]), [], "the RUN is gone");
    // the helper exits once kiln's end of its stdin is closed
    for (let i = 0; i < 50 && existsSync(`/proc/${helper}`); i++)
      await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(!existsSync(`/proc/${helper}`), "the mount helper exited with kiln");
  } finally {
    await removeTree(dir);
  }
});
