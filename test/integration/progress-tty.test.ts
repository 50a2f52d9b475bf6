/**
 * The live renderer in a real pseudo-terminal: `script` (util-linux) gives the driver a pty, so
 * `createRenderer("auto", process.stdout)` sees a TTY exactly as in an interactive shell.
 */
import { suite, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { replay } from "../unit/progress/vt.js";
import * as s from "../unit/progress/script.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

async function inPty(env: NodeJS.ProcessEnv): Promise<string> {
  const cmd = "stty cols 100 rows 30; exec node --import tsx test/unit/progress/tty-driver.ts";
  const drop = ["CI", "NO_COLOR", "KILN_PROGRESS", "BUILDKIT_PROGRESS"];
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !drop.includes(k)));
  const { stdout } = await promisify(execFile)("script", ["-qfec", cmd, "/dev/null"], {
    cwd: root,
    env: { ...base, TERM: "xterm-256color", ...env },
  });
  return stdout;
}

// The two runs are independent and mostly wait on the script's clock: run them side by side.
suite("progress in a pseudo-terminal", { concurrency: true }, () => {
  test("in a terminal, auto mode draws the live view and leaves the final state on screen", async () => {
    const out = await inPty({});
    assert.match(out, /\[\+\] Building \d+\.\ds \(0\/1\)/, "the first header");
    assert.match(out, /\x1b\[\d+A/, "cursor moves up to redraw"); // eslint-disable-line no-control-regex
    assert.ok(out.includes("\x1b[34m => [internal]"), "finished vertices in color");
    assert.ok(out.includes("\x1b[2m => => # building"), "dimmed log tail of a running vertex");

    const screen = replay(out, 30);
    const header = screen.findIndex((l) => l.startsWith("[+] Building"));
    assert.match(screen[header]!, /^\[\+\] Building \d+\.\ds \(4\/4\) FINISHED$/);
    assert.deepEqual(screen.slice(header + 1, header + 8), [
      ` => ${s.NAME_A}`.padEnd(95) + "0.0s",
      " => => transferring dockerfile 96B".padEnd(95) + "0.0s",
      ` => ${s.NAME_B}`.padEnd(95) + "0.5s",
      " => => sha256:1111 3.40MB / 3.40MB".padEnd(95) + "0.5s",
      " => WARN: FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value (Dockerfile:1)".slice(
        0,
        99,
      ),
      ` => ERROR ${s.NAME_C}`.padEnd(95) + "1.9s",
      ` => CACHED ${s.NAME_D}`.padEnd(95) + "0.0s",
    ]);
    assert.deepEqual(screen.slice(-3), [
      "Built 2 platforms in 2.1s:",
      ` linux/amd64  1.2s                   7/7 cached  ${s.DIGEST}`,
      " linux/arm64  2.0s  (1.5s emulated)  3/7 cached",
    ]);
  });

  test("in a terminal under CI, auto mode falls back to plain output", async () => {
    const out = await inPty({ CI: "true" });
    assert.ok(!out.includes("\x1b["), "no escape sequences");
    const lines = out.split("\r\n");
    assert.equal(lines[0], `#1 ${s.NAME_A}`);
    assert.ok(lines.includes(`#3 ERROR: ${s.MAKE_ERROR}`));
    assert.ok(lines.includes("#4 CACHED"));
  });
});
