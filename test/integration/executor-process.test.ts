// src/process: the spawning module the executor (and others) run every external program through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { run, runChecked } from "../../src/process/index.js";
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
