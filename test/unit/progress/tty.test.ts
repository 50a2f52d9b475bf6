import { test } from "node:test";
import assert from "node:assert/strict";
import { TtyRenderer, type ProgressEvent } from "../../../src/progress/index.js";
import { displayWidth } from "../../../src/progress/terminal.js";
import * as s from "./script.js";
import { replay } from "./vt.js";

async function run(
  size: { columns: number; rows: number },
  events: [number, ProgressEvent][] = s.script,
): Promise<string> {
  const clock = s.fakeClock();
  const out = new s.Capture(size);
  const r = new TtyRenderer(out, { clock: clock.now, timers: false, color: false });
  for (const [t, ev] of events) {
    clock.set(t);
    r.write(ev);
  }
  clock.set(s.T0 + 2200);
  await r.close();
  return out.text;
}

const finalScreen = [
  "[+] Building 2.2s (4/4) FINISHED",
  ` => ${s.NAME_A}`.padEnd(65) + "0.0s",
  " => => transferring dockerfile 96B".padEnd(65) + "0.0s",
  ` => ${s.NAME_B}`.padEnd(65) + "0.5s",
  " => => sha256:1111 3.40MB / 3.40MB".padEnd(65) + "0.5s",
  " => WARN: FromPlatformFlagConstDisallowed: FROM --platform flag shoul",
  ` => ERROR ${s.NAME_C}`.padEnd(65) + "1.9s",
  ` => CACHED ${s.NAME_D}`.padEnd(65) + "0.0s",
  "------",
  ` > ${s.NAME_C}:`,
  "0.512 building",
  "0.512 partial line",
  "1.400 no newline at end",
  "------",
  "",
  "2 warnings found:",
  " - FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value (Dockerfile:1)",
  " - Something global",
  "",
  "Built 2 platforms in 2.1s:",
  ` linux/amd64  1.2s                   7/7 cached  ${s.DIGEST}`,
  " linux/arm64  2.0s  (1.5s emulated)  3/7 cached",
];

test("redrawn in place, the screen ends with the final state, errors, warnings and summary", async () => {
  assert.deepEqual(replay(await run({ columns: 70, rows: 40 }), 40), finalScreen);
});

test("a block taller than the terminal moves finished vertices into the stable region", async () => {
  const out = await run({ columns: 70, rows: 5 });
  const screen = replay(out, 5);
  // Every vertex and transfer appears exactly once: committed lines are never drawn twice.
  for (const needle of [s.NAME_A, s.NAME_B, s.NAME_C, s.NAME_D, "transferring dockerfile"]) {
    assert.equal(screen.filter((l) => l.startsWith(" =>") && l.includes(needle)).length, 1, needle);
  }
  assert.equal(screen.filter((l) => l.startsWith("[+] Building")).length, 1);
  assert.deepEqual(screen.slice(-14), finalScreen.slice(-14));
  // Live frames never exceed rows - 1 lines, so the cursor can always reach the block's top.
  for (const m of out.matchAll(/\x1b\[(\d+)A/g)) assert.ok(Number(m[1]) <= 4, m[0]); // eslint-disable-line no-control-regex
});

test("redraws are throttled to the refresh interval and move the cursor over the last block", () => {
  const clock = s.fakeClock();
  const out = new s.Capture({ columns: 60, rows: 20 });
  const r = new TtyRenderer(out, { clock: clock.now, timers: false, color: false });
  r.write({ type: "vertex", id: "a", name: "one", started: s.T0 });
  const first = out.text;
  assert.ok(first.startsWith("\x1b[?25l\r[+] Building 0.0s (0/1)"));
  r.write({ type: "vertex", id: "b", name: "two", started: s.T0 });
  clock.set(s.T0 + 99);
  r.write({ type: "log", vertex: "a", stream: 1, data: "hello\n", timestamp: s.T0 + 99 });
  assert.equal(out.text, first, "no redraw within 100 ms");
  clock.set(s.T0 + 100);
  r.write({ type: "log", vertex: "b", stream: 1, data: "world\n", timestamp: s.T0 + 100 });
  const second = out.text.slice(first.length);
  // The first frame was two lines (header and "one"): go up two, then redraw everything.
  assert.ok(second.startsWith("\x1b[?25l\x1b[2A\r[+] Building 0.1s (0/2)"), JSON.stringify(second));
  assert.deepEqual(replay(out.text, 20), [
    "[+] Building 0.1s (0/2)",
    " => one".padEnd(55) + "0.1s",
    " => => # hello",
    " => two".padEnd(55) + "0.1s",
    " => => # world",
  ]);
});

test("lines fit the terminal width, counting wide characters as two columns", async () => {
  const wide = "[linux/arm64 build 2/2] RUN echo 構築中のイメージ構築中のイメージ構築中のイメージ";
  const out = await run({ columns: 40, rows: 20 }, [
    [s.T0, { type: "vertex", id: "w", name: wide, started: s.T0 }],
    [
      s.T0,
      {
        type: "log",
        vertex: "w",
        stream: 1,
        data: "\x1b[31m漢字\tok\x1b[0m\rprogress 50%\n",
        timestamp: s.T0,
      },
    ],
    [
      s.T0 + 200,
      { type: "log", vertex: "w", stream: 1, data: "x".repeat(100) + "\n", timestamp: s.T0 },
    ],
  ]);
  const screen = replay(out, 20);
  for (const l of screen.slice(0, 3)) assert.ok(displayWidth(l) <= 39, `${displayWidth(l)}: ${l}`);
  assert.ok(out.includes(" => => # progress 50%"));
  assert.ok(screen[1]!.endsWith("2.2s"));
});

test("the refresh timer redraws running vertices without new events, and close stops it", async () => {
  const out = new s.Capture({ columns: 60, rows: 20 });
  let frames = 0;
  const enough = new Promise<void>((resolve) => {
    out.on("frame", () => {
      if (++frames === 3) resolve();
    });
  });
  const write = out._write.bind(out);
  out._write = (chunk, enc, cb) => {
    write(chunk, enc, cb);
    out.emit("frame");
  };
  // The renderer's timer never keeps the process alive; this test has to.
  const keepAlive = setInterval(() => undefined, 1000);
  const r = new TtyRenderer(out, { refreshMs: 10, color: false });
  r.write({ type: "vertex", id: "a", name: "long step", started: Date.now() });
  await enough;
  await r.close();
  const closed = out.text;
  await new Promise((resolve) => setTimeout(resolve, 50));
  clearInterval(keepAlive);
  assert.equal(out.text, closed, "no frames after close");
  assert.ok(closed.includes("[+] Building"));
  assert.equal(replay(closed, 20).filter((l) => l.includes("long step")).length, 1);
});
