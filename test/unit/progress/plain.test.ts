import { test } from "node:test";
import assert from "node:assert/strict";
import { PlainRenderer, type ProgressEvent } from "../../../src/progress/index.js";
import * as s from "./script.js";

async function render(events: [number, ProgressEvent][]): Promise<string> {
  const clock = s.fakeClock();
  const out = new s.Capture();
  const r = new PlainRenderer(out, { clock: clock.now });
  for (const [t, ev] of events) {
    clock.set(t);
    r.write(ev);
  }
  await r.close();
  return out.text;
}

test("plain output of the scripted build is BuildKit's plain style", async () => {
  const expected = [
    `#1 ${s.NAME_A}`,
    "#1 transferring dockerfile 96B done",
    "#1 DONE 0.0s",
    "",
    `#2 ${s.NAME_B}`,
    "#2 sha256:1111 1.20MB / 3.40MB",
    "#2 WARN: FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value (Dockerfile:1)",
    "#2 ...",
    "",
    `#3 ${s.NAME_C}`,
    "#3 0.512 building",
    "#3 0.512 partial line",
    "#3 ...",
    "",
    `#2 ${s.NAME_B}`,
    "#2 sha256:1111 3.40MB / 3.40MB 0.5s done",
    "#2 DONE 0.5s",
    "",
    `#3 ${s.NAME_C}`,
    "#3 1.400 no newline at end",
    `#3 ERROR: ${s.MAKE_ERROR}`,
    "",
    `#4 ${s.NAME_D}`,
    "#4 CACHED",
    "",
    "WARN: Something global",
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
    "",
  ].join("\n");
  assert.equal(await render(s.script), expected);
});

test("log offsets lose decimals as they grow; DONE without a start has no time", async () => {
  const id = "sha256:eeee";
  const out = await render([
    [s.T0, { type: "vertex", id, name: "step", started: s.T0 }],
    [s.T0, { type: "log", vertex: id, stream: 1, data: "a\n", timestamp: s.T0 + 9_999 }],
    [s.T0, { type: "log", vertex: id, stream: 1, data: "b\n", timestamp: s.T0 + 12_345 }],
    [s.T0, { type: "log", vertex: id, stream: 1, data: "c\n", timestamp: s.T0 + 123_456 }],
    [s.T0, { type: "vertex", id, name: "step", completed: s.T0 + 130_000 }],
    [s.T0, { type: "vertex", id: "sha256:ffff", name: "other", completed: s.T0 }],
    [
      s.T0,
      { type: "vertex", id: "sha256:9999", name: "sibling", started: s.T0, error: "canceled" },
    ],
  ]);
  assert.equal(
    out,
    [
      "#1 step",
      "#1 9.999 a",
      "#1 12.35 b",
      "#1 123.5 c",
      "#1 DONE 130.0s",
      "",
      "#2 other",
      "#2 DONE",
      "",
      "#3 sibling",
      "#3 CANCELED",
      "",
    ].join("\n"),
  );
});

test("announced vertices print nothing until they start; numbering is by first appearance", async () => {
  const out = await render([
    [s.T0, { type: "vertex", id: "x", name: "first announced" }],
    [s.T0, { type: "vertex", id: "y", name: "second announced" }],
    [s.T0, { type: "vertex", id: "y", name: "second announced", started: s.T0 }],
  ]);
  assert.equal(out, "#2 second announced\n");
});

test("a transfer prints again after 5% more bytes or 5 s", async () => {
  const st = (current: number): ProgressEvent => ({
    type: "status",
    vertex: "v",
    id: "blob",
    current,
    total: 1000,
  });
  const out = await render([
    [s.T0, { type: "vertex", id: "v", name: "pull", started: s.T0 }],
    [s.T0, st(100)],
    [s.T0 + 1, st(149)],
    [s.T0 + 2, st(150)],
    [s.T0 + 5002, st(151)],
  ]);
  assert.equal(
    out,
    ["#1 pull", "#1 blob 100B / 1.00kB", "#1 blob 150B / 1.00kB", "#1 blob 151B / 1.00kB", ""].join(
      "\n",
    ),
  );
});

test("events after close are ignored", async () => {
  const out = new s.Capture();
  const r = new PlainRenderer(out);
  await r.close();
  r.write({ type: "vertex", id: "z", name: "late", started: 1 });
  assert.equal(out.text, "");
});
