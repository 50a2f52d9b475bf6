// src/process/brief.ts: brief commands (sync -f) run by a pool of shells.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, realpath, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { runBrief, runBriefChecked } from "../../src/process/index.js";
import { briefScript, shellQuote } from "../../src/process/brief.js";
import { isKilnError } from "../../src/errors.js";

const HOSTILE = [
  "plain",
  "it's",
  "'",
  "$(touch /tmp/kiln-brief-pwned)",
  "`id`",
  "a\nb",
  "$HOME; exit 0",
  "\\'\"",
  "",
  " spaced  out ",
];

test("shellQuote and briefScript: every argument one literal word", async () => {
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.match(
    briefScript("sync", ["-f", "/x y"], undefined, "M"),
    /^'sync' '-f' '\/x y' <\/dev\/null/,
  );
  assert.match(
    briefScript("mount", ["a"], "/d'ir", "M"),
    /^\(cd '\/d'\\''ir' && exec 'mount' 'a'\)/,
  );
  // what the shell makes of it: the same argv back
  for (const arg of HOSTILE) {
    const s = await runBrief("sh", ["-c", 'printf %s "$1" >&2', "_", arg]);
    assert.deepEqual([s.exitCode, s.stderr], [0, arg], JSON.stringify(arg));
  }
  await assert.rejects(stat("/tmp/kiln-brief-pwned"));
});

test("runBrief: exit status, stderr, cwd, many at once", async () => {
  const s = await runBrief("sh", ["-c", "echo bad >&2; exit 3"]);
  assert.deepEqual([s.exitCode, s.stderr], [3, "bad\n"]);
  const dir = await mkdtemp(join(tmpdir(), "kiln-brief-"));
  try {
    const where = await runBrief("sh", ["-c", "pwd >&2"], { cwd: dir });
    assert.equal(where.stderr, `${await realpath(dir)}\n`);
    // more than the pool's shells: each command's own output and status
    const all = await Promise.all(
      Array.from({ length: 12 }, (_, i) => runBrief("sh", ["-c", `echo ${i} >&2; exit ${i}`])),
    );
    assert.deepEqual(
      all.map((r) => [r.exitCode, r.stderr]),
      Array.from({ length: 12 }, (_, i) => [i, `${i}\n`]),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("runBriefChecked and failures: a clear error, the pool still works after a timeout", async () => {
  await assert.rejects(
    runBriefChecked("sh", ["-c", "echo no mount >&2; exit 32"], { errorCode: "E_X", hint: "h" }),
    (e) => {
      assert.ok(isKilnError(e));
      assert.deepEqual([e.code, e.hint], ["E_X", "h"]);
      assert.match(e.message, /failed \(exit 32\): no mount/);
      return true;
    },
  );
  await assert.rejects(runBrief("kiln-no-such-program", []), (e) => {
    assert.ok(isKilnError(e));
    assert.equal(e.code, "E_PROCESS_SPAWN");
    assert.match(e.hint ?? "", /Install kiln-no-such-program/);
    return true;
  });
  await assert.rejects(runBrief("sleep", ["30"], { timeoutMs: 200 }), (e) => {
    assert.ok(isKilnError(e));
    assert.equal(e.code, "E_PROCESS_TIMEOUT");
    return true;
  });
  assert.equal((await runBrief("true", [])).exitCode, 0);
});

test("idle shells do not keep kiln running", async () => {
  // a process that ran brief commands ends by itself (a hang here fails by the test timeout)
  const script = `import { runBrief } from ${JSON.stringify(fileURLToPath(new URL("../../src/process/index.ts", import.meta.url)))};
await Promise.all([runBrief("true", []), runBrief("true", [])]);
console.log("done");`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", script],
    { timeout: 60_000 },
  );
  assert.equal(stdout, "done\n");
});
