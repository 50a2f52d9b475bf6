// src/process: the spawning module the executor (and others) run every external program through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { setImmediate } from "node:timers/promises";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { filterThrough, run, runChecked, spawnStream } from "../../src/process/index.js";
import { isKilnError } from "../../src/errors.js";

test("run: exit status, stdout, stderr tail, input", async () => {
  const r = await run("sh", ["-c", "cat; echo err >&2; exit 3"], { input: "in" });
  assert.equal(r.exitCode, 3);
  assert.equal(r.stdout.toString(), "in");
  assert.equal(r.stderr, "err\n");
  const killed = await run("sh", ["-c", "kill -9 $$"]);
  assert.deepEqual([killed.exitCode, killed.signal], [137, "SIGKILL"]);
  const chunks: string[] = [];
  const streamed = await run("echo", ["x"], { onStdout: (c) => chunks.push(c.toString()) });
  assert.deepEqual([streamed.stdout.length, chunks.join("")], [0, "x\n"]);
});

test("runChecked: non-zero exit becomes a KilnError with the command and stderr", async () => {
  await assert.rejects(
    runChecked("sh", ["-c", "echo bad thing >&2; exit 1"], { errorCode: "E_X", hint: "h" }),
    (e) => {
      assert.ok(isKilnError(e));
      assert.equal(e.code, "E_X");
      assert.equal(e.hint, "h");
      assert.match(e.message, /sh -c "echo bad thing >&2; exit 1" failed \(exit 1\): bad thing/);
      return true;
    },
  );
  await assert.rejects(
    run("/no/such/binary", []),
    (e) => isKilnError(e) && e.code === "E_PROCESS_SPAWN",
  );
});

test("spawnStream: streamed stdout; stdin a pipe, /dev/null or a file; exit status with the stderr tail", async () => {
  const p = spawnStream("sh", ["-c", "tr a-z A-Z; echo done >&2; exit 2"]);
  p.stdin!.end("abc");
  const chunks: Buffer[] = [];
  for await (const c of p.stdout) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), "ABC");
  assert.deepEqual(await p.done, { exitCode: 2, signal: null, stderr: "done\n" });
  const fromNull = spawnStream("cat", [], { stdin: "ignore" });
  for await (const c of fromNull.stdout) assert.fail(`unexpected output ${String(c)}`);
  assert.equal((await fromNull.done).exitCode, 0);
  const file = await open(fileURLToPath(import.meta.url), "r");
  try {
    const fromFile = spawnStream("head", ["-c", "2"], { stdin: file.fd });
    const head: Buffer[] = [];
    for await (const c of fromFile.stdout) head.push(c as Buffer);
    assert.equal(Buffer.concat(head).toString(), "//");
    assert.equal((await fromFile.done).exitCode, 0);
  } finally {
    await file.close();
  }
  const missing = spawnStream("/no/such/binary", []);
  await assert.rejects(missing.done, (e) => isKilnError(e) && e.code === "E_PROCESS_SPAWN");
});

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of it) chunks.push(c);
  return Buffer.concat(chunks).toString();
}

function source(...parts: string[]): AsyncIterable<Buffer> {
  return Readable.from(parts.map((p) => Buffer.from(p)));
}

test("filterThrough: output streams, failures become the caller's error", async () => {
  const fail = (detail: string, cause?: unknown) => new Error(`mine: ${detail}`, { cause });
  assert.equal(
    await collect(filterThrough("tr", ["a-z", "A-Z"], source("ab", "cd"), fail)),
    "ABCD",
  );
  await assert.rejects(
    collect(filterThrough("sh", ["-c", "cat >/dev/null; echo bad >&2; exit 3"], source("x"), fail)),
    { message: "mine: sh failed (exit status 3): bad" },
  );
  await assert.rejects(collect(filterThrough("/no/such/binary", [], source("x"), fail)), {
    message: /^mine: cannot start \/no\/such\/binary/,
  });
  // A program that exits 0 without reading everything lost data: an error, not a short output.
  const big = Buffer.alloc(4 << 20).toString();
  await assert.rejects(collect(filterThrough("true", [], source(big, big), fail)), {
    message: "mine: true stopped reading its input",
  });
  // Stopping early kills the program instead of leaving it blocked on a full pipe.
  for await (const c of filterThrough("yes", [], source(), fail)) {
    assert.ok(c.length > 0);
    break;
  }
});

test("filterThrough: a source may reuse its buffer for every chunk", async () => {
  const fail = (detail: string) => new Error(detail);
  // 4 MiB in 8 KiB chunks, each one written into the same buffer: the program reads late, so
  // chunks wait in the pipe while the next ones are made
  const reused = Buffer.alloc(8192);
  const expected = createHash("sha256");
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 512; i++) {
      await setImmediate(); // a turn of the event loop between chunks, as a walk takes
      reused.fill(i % 251);
      reused.writeUInt32BE(i);
      expected.update(reused);
      yield reused;
    }
  }
  const out = await collect(filterThrough("sh", ["-c", "sleep 0.2; sha256sum"], chunks(), fail));
  assert.equal(out.slice(0, 64), expected.digest("hex"));
});

test("timeout and abort kill the child", async () => {
  await assert.rejects(
    run("sleep", ["30"], { timeoutMs: 50 }),
    (e) => isKilnError(e) && e.code === "E_PROCESS_TIMEOUT",
  );
  const ac = new AbortController();
  const p = run("sleep", ["30"], {
    signal: ac.signal,
    onSpawn: () => {
      ac.abort();
    },
  });
  await assert.rejects(p, (e) => isKilnError(e) && e.code === "E_PROCESS_ABORTED");
});

test("killWithParent: the child dies with a SIGKILLed parent", { timeout: 30_000 }, async () => {
  const entry = JSON.stringify(
    fileURLToPath(new URL("../../src/process/index.ts", import.meta.url)),
  );
  const script = `
    import { run } from ${entry};
    await run("sleep", ["300"], { killWithParent: true, onSpawn: (pid) => console.log(pid) });`;
  const parent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const pid = await new Promise<number>((resolve) => {
    parent.stdout.once("data", (c: Buffer) => {
      resolve(Number(c.toString().trim()));
    });
  });
  // Once setpriv has exec'd the program in place, the pid runs sleep itself.
  while (!(await run("cat", [`/proc/${pid}/cmdline`])).stdout.toString().startsWith("sleep\0")) {
    await new Promise((r) => setTimeout(r, 20));
  }
  parent.kill("SIGKILL");
  await new Promise((r) => parent.once("close", r));
  // The kernel delivers pdeathsig when the parent exits; wait for the child to be reaped.
  let alive = true;
  while (alive) {
    const st = await run("cat", [`/proc/${pid}/stat`]);
    alive = st.exitCode === 0 && !/\) Z /.test(st.stdout.toString());
    if (alive) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(!alive);
});
