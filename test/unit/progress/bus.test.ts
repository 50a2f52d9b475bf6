import { test } from "node:test";
import assert from "node:assert/strict";
import { ProgressBus, QuietRenderer, RecordingSink } from "../../../src/progress/index.js";
import * as s from "./script.js";

test("the bus fans events out to every sink and closes them all", async () => {
  const a = new RecordingSink();
  const b = new RecordingSink();
  const bus = new ProgressBus([a]);
  bus.add(b);
  for (const [, ev] of s.script) bus.write(ev);
  await bus.close();
  bus.write({ type: "warning", message: "late" });
  assert.equal(a.events.length, s.script.length);
  assert.deepEqual(a.events, b.events);
  assert.ok(a.closed && b.closed);
});

test("the recorder merges vertex updates and filters by type", () => {
  const r = new RecordingSink();
  for (const [, ev] of s.script) r.write(ev);
  const vs = r.vertices();
  assert.deepEqual(
    vs.map((v) => v.id),
    [s.A, s.B, s.C, s.D],
  );
  assert.deepEqual(vs[2], {
    type: "vertex",
    id: s.C,
    name: s.NAME_C,
    platform: "linux/arm64",
    inputs: [s.B],
    started: s.T0 + 100,
    emulated: true,
    completed: s.T0 + 2000,
    error: s.MAKE_ERROR,
  });
  assert.equal(r.ofType("log").length, 3);
  assert.equal(r.ofType("summary")[0]?.platforms.length, 2);
});

test("the recorder keeps copies, not the producer's mutable objects", () => {
  const r = new RecordingSink();
  const ev = { type: "vertex" as const, id: "x", name: "n" };
  r.write(ev);
  ev.name = "changed";
  assert.equal(r.vertices()[0]?.name, "n");
});

test("quiet prints only failures: the failed step's last output and its error", async () => {
  const out = new s.Capture();
  const r = new QuietRenderer(out);
  for (const [, ev] of s.script) r.write(ev);
  await r.close();
  assert.equal(
    out.text,
    [
      "------",
      ` > ${s.NAME_C}:`,
      "0.512 building",
      "0.512 partial line",
      "1.400 no newline at end",
      "------",
      `ERROR: ${s.NAME_C}: ${s.MAKE_ERROR}`,
      "",
    ].join("\n"),
  );
});

test("quiet prints nothing for a successful build", async () => {
  const out = new s.Capture();
  const r = new QuietRenderer(out);
  for (const [, ev] of s.script.slice(0, 8)) r.write(ev);
  await r.close();
  assert.equal(out.text, "");
});
