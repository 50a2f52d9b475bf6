import { test } from "node:test";
import assert from "node:assert/strict";
import {
  countSteps,
  criticalPath,
  failedStep,
  foldSteps,
  traceOf,
  timelineHtml,
  type BuildRecord,
} from "../../../src/history/index.js";
import { layoutSteps } from "../../../src/history/lanes.js";
import type { ProgressEvent } from "../../../src/progress/index.js";

const T = 1_700_000_000_000;

/** Two platforms: FROM → RUN each; arm64's RUN emulated and failing; amd64's canceled. */
function events(): ProgressEvent[] {
  return [
    {
      type: "vertex",
      id: "a1",
      name: "[linux/amd64 1/2] FROM b",
      platform: "linux/amd64",
      inputs: [],
    },
    {
      type: "vertex",
      id: "b1",
      name: "[linux/arm64 1/2] FROM b",
      platform: "linux/arm64",
      inputs: [],
    },
    {
      type: "vertex",
      id: "a2",
      name: "[linux/amd64 2/2] RUN make",
      platform: "linux/amd64",
      inputs: ["a1"],
    },
    {
      type: "vertex",
      id: "b2",
      name: "[linux/arm64 2/2] RUN make",
      platform: "linux/arm64",
      inputs: ["b1"],
    },
    {
      type: "vertex",
      id: "ctx",
      name: "[internal] load build context",
      started: T,
      completed: T + 5,
    },
    {
      type: "vertex",
      id: "a1",
      name: "[linux/amd64 1/2] FROM b",
      started: T,
      completed: T,
      cached: true,
    },
    { type: "vertex", id: "b1", name: "[linux/arm64 1/2] FROM b", started: T + 1 },
    { type: "vertex", id: "b1", name: "[linux/arm64 1/2] FROM b", completed: T + 300 },
    { type: "vertex", id: "a2", name: "[linux/amd64 2/2] RUN make", started: T + 2 },
    {
      type: "vertex",
      id: "b2",
      name: "[linux/arm64 2/2] RUN make",
      started: T + 300,
      emulated: true,
    },
    { type: "log", vertex: "b2", stream: 1, data: "compiling\nlinking", timestamp: T + 400 },
    { type: "log", vertex: "b2", stream: 2, data: " failed\n", timestamp: T + 900 },
    {
      type: "vertex",
      id: "b2",
      name: "[linux/arm64 2/2] RUN make",
      completed: T + 1000,
      error: `[linux/arm64 2/2] RUN make: process "/bin/sh -c make" did not complete successfully: exit code: 2`,
    },
    {
      type: "vertex",
      id: "a2",
      name: "[linux/amd64 2/2] RUN make",
      completed: T + 1001,
      error: "canceled",
    },
  ];
}

function record(status: BuildRecord["status"] = "error"): BuildRecord {
  return {
    version: 1,
    ref: "abc123",
    name: "app <x>",
    status,
    createdAt: T - 10,
    completedAt: T + 1010,
    owner: "1-1",
    host: "h",
    request: {
      context: "/src/app",
      dockerfile: "Dockerfile",
      platforms: ["linux/amd64", "linux/arm64"],
      buildArgs: {},
      labels: {},
      tags: [],
      namedContexts: {},
      outputs: [],
      noCache: false,
      noCacheFilter: [],
      network: "default",
      extraHosts: [],
      secrets: [],
      ssh: [],
    },
    dockerfile: { name: "Dockerfile" },
  };
}

test("steps fold from events: mode, failure with exit code and command, log tail", () => {
  const steps = foldSteps(events());
  assert.deepEqual(
    steps.map((s) => [s.id, s.mode]),
    [
      ["a1", "cached"],
      ["b1", "native"],
      ["a2", "native"],
      ["b2", "emulated"],
      ["ctx", "native"],
    ],
  );
  const failed = failedStep(steps)!;
  assert.equal(failed.id, "b2", "the canceled amd64 step is not the failure");
  assert.equal(failed.exitCode, 2);
  assert.equal(failed.command, "/bin/sh -c make");
  assert.deepEqual(failed.logTail, ["compiling", "linking failed"]);
  assert.equal(steps.find((s) => s.id === "a2")!.canceled, true);
  assert.deepEqual(countSteps(steps), { total: 5, completed: 3, cached: 1 });
});

test("the critical path follows the input that finished last, never a canceled step", () => {
  const steps = foldSteps(events());
  assert.deepEqual(criticalPath(steps, T + 2000), ["b1", "b2"]);
  // a step outside the graph (no inputs recorded) waits for what ended last before it
  const withExport: ProgressEvent[] = [
    ...events(),
    {
      type: "vertex",
      id: "export",
      name: "exporting layers",
      started: T + 1100,
      completed: T + 1500,
    },
  ];
  assert.deepEqual(criticalPath(foldSteps(withExport), T + 2000), ["b1", "b2", "export"]);
});

test("lanes: one per platform, the build lane last, overlapping steps on separate rows", () => {
  const steps = foldSteps(events());
  const layout = layoutSteps(steps, T + 2000);
  assert.deepEqual(
    layout.lanes.map((l) => [l.name, l.steps.length, l.rows]),
    [
      ["linux/amd64", 2, 1],
      ["linux/arm64", 2, 1],
      ["build", 1, 1],
    ],
  );
  const two = layoutSteps(
    foldSteps([
      { type: "vertex", id: "x", name: "x", platform: "p", started: T, completed: T + 10 },
      { type: "vertex", id: "y", name: "y", platform: "p", started: T + 5, completed: T + 20 },
      { type: "vertex", id: "z", name: "z", platform: "p", started: T + 10, completed: T + 30 },
    ]),
    T,
  );
  assert.deepEqual(
    two.lanes[0]!.steps.map((p) => p.row),
    [0, 1, 0],
  );
  const multiNode = layoutSteps(
    foldSteps([
      { type: "vertex", id: "n", name: "n", platform: "linux/arm64", node: "pi", started: T },
    ]),
    T + 1,
  );
  assert.equal(multiNode.lanes[0]!.name, "pi · linux/arm64");
});

test("trace: one complete event per step per platform, emulated ones marked", () => {
  const trace = traceOf(record(), foldSteps(events()));
  const spans = trace.traceEvents.filter((e) => e.ph === "X");
  assert.equal(spans.length, 5);
  const lanes = new Map(
    trace.traceEvents
      .filter((e) => e.name === "process_name")
      .map((e) => [e.pid, (e.args as { name: string }).name]),
  );
  const perLane = (name: string) => spans.filter((e) => lanes.get(e.pid) === name).length;
  assert.equal(perLane("linux/amd64"), 2);
  assert.equal(perLane("linux/arm64"), 2);
  const emulated = spans.filter((e) => e.cat?.split(",").includes("emulated"));
  assert.deepEqual(
    emulated.map((e) => e.name),
    ["[linux/arm64 2/2] RUN make"],
  );
  assert.equal(emulated[0]!.dur, 700_000, "microseconds");
  assert.equal((emulated[0]!.args as { exitCode: number }).exitCode, 2);
});

test("timeline: a bar per step, escaped text, no scripts and nothing fetched", () => {
  const evs = events();
  evs.push({
    type: "vertex",
    id: "evil",
    name: `[linux/amd64 3/3] RUN echo "<script>alert(1)</script>" & x`,
    platform: "linux/amd64",
    started: T + 5,
    completed: T + 6,
  });
  const html = timelineHtml(record(), foldSteps(evs));
  assert.equal((html.match(/<rect class="bar /g) ?? []).length, 6);
  assert.equal((html.match(/data-platform="linux\/arm64"/g) ?? []).length, 2);
  assert.doesNotMatch(html, /<script/i);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(html, /app &lt;x&gt;/);
  // self-contained: the only URL is the SVG namespace
  assert.deepEqual(html.match(/https?:\/\/[^"\s]+/g), ["http://www.w3.org/2000/svg"]);
  assert.match(html, /class="bar emulated failed"/);
  assert.match(html, /exit code: 2/);
});
