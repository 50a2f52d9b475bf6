// Build history through the real CLI: a 2-platform build and a failing one are recorded and
// read back by `kiln history` (ls, inspect, logs, trace, timeline rendered in headless
// Chromium, export/import, rm); a SIGKILLed build leaves a readable, canceled record.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  collect,
  kiln,
  kilnOk,
  removeTree,
  startKiln,
  stderrSays,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
  type KilnOptions,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
const PLATFORMS = ["linux/amd64", "linux/arm64"];

let dir = "";
let root = "";
let okRef = "";
let okEvents: Awaited<ReturnType<typeof kiln>>["events"] = [];
let okSteps: Inspected["Steps"] = [];

const opts = (cwd: string, r = root): KilnOptions => ({ root: r, cwd });

async function history(args: string[], r = root): Promise<string> {
  const res = await collect(await startKiln(["history", ...args], opts(dir, r)));
  assert.equal(res.code, 0, `kiln history ${args.join(" ")}: ${res.stderr}`);
  return res.stdout;
}

interface LsLine {
  ref: string;
  name: string;
  status: string;
  platforms: string[];
  total_steps: number;
  cached_steps: number;
}

async function ls(r = root): Promise<LsLine[]> {
  const out = await history(["ls", "--format", "json"], r);
  return out
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as LsLine);
}

interface Inspected {
  Ref: string;
  Status: string;
  Error?: { ExitCode?: number; Command?: string; Name?: string; Logs?: string[] };
  Steps: { Name: string; Platform?: string; Mode: string }[];
}

async function inspect(ref: string, r = root): Promise<Inspected> {
  return JSON.parse(await history(["inspect", ref, "--format", "json"], r)) as Inspected;
}

before(async () => {
  dir = await tempDir("history");
  root = join(dir, "root");
});
after(() => removeTree(dir));

test("a 2-platform build and a failing one: ls, inspect, logs, trace and timeline", async () => {
  const ok = await writeContext(join(dir, "app"), {
    Dockerfile: `FROM ${reg}/base/busybox
RUN echo "built on $(uname -m)" > /arch
COPY Dockerfile /df
RUN cat /arch
`,
  });
  const meta = join(dir, "meta.json");
  const built = await kilnOk(
    ["build", "--platform", PLATFORMS.join(","), "--metadata-file", meta, "."],
    opts(ok),
  );
  okEvents = built.events;
  const bad = await writeContext(join(dir, "broken"), {
    Dockerfile: `FROM ${reg}/base/busybox
RUN echo about to fail && exit 7
`,
  });
  const failed = await kiln(["build", "--platform", PLATFORMS.join(","), "."], opts(bad));
  assert.equal(failed.code, 1);

  const records = await ls();
  assert.deepEqual(
    records.map((r) => [r.name, r.status, r.platforms]),
    [
      ["broken", "error", PLATFORMS],
      ["app", "completed", PLATFORMS],
    ],
  );
  okRef = records[1]!.ref;
  const buildRef = (JSON.parse(await readFile(meta, "utf8")) as Record<string, string>)[
    "buildx.build.ref"
  ];
  assert.equal(buildRef?.split("/").pop(), okRef, "--metadata-file names the record");
  const graphSteps = vertexRecords(okEvents);
  assert.ok(records[1]!.total_steps >= graphSteps.length);

  // the failure: its step, command and exit code
  const pretty = await history(["inspect"]);
  assert.match(pretty, /^Status:\s+Error$/m);
  assert.match(pretty, /^Exit Code:\s+7$/m);
  assert.match(pretty, /^Command:\s+\/bin\/sh -c echo about to fail && exit 7$/m);
  assert.match(pretty, /^> about to fail$/m);
  const doc = await inspect("^0");
  assert.equal(doc.Status, "error");
  assert.equal(doc.Error?.ExitCode, 7);
  assert.equal(doc.Error?.Command, "/bin/sh -c echo about to fail && exit 7");
  assert.match(doc.Error?.Name ?? "", /^\[linux\/(amd64|arm64) 2\/2\] RUN echo about to fail/);

  // logs: every step of the good build, its output, its ending
  const logs = await history(["logs", okRef]);
  okSteps = (await inspect(okRef)).Steps;
  for (const s of okSteps) {
    assert.match(logs, new RegExp(`^#\\d+ ${escapeRe(s.Name)}$`, "m"), `header of ${s.Name}`);
  }
  assert.match(logs, /^#\d+ \d\.\d{3} built on x86_64$/m);
  assert.match(logs, /^#\d+ \d\.\d{3} built on aarch64$/m);
  assert.match(logs, /^#\d+ DONE \d+\.\ds$/m);
  assert.match(logs, /^Built 2 platforms in /m);

  // trace: one span per step per platform, the emulated ones marked
  const trace = JSON.parse(await history(["trace", okRef])) as {
    traceEvents: { ph: string; pid: number; name: string; cat?: string; args: { name?: string } }[];
  };
  const lanes = new Map(
    trace.traceEvents.filter((e) => e.name === "process_name").map((e) => [e.pid, e.args.name]),
  );
  const spans = trace.traceEvents.filter((e) => e.ph === "X");
  for (const p of PLATFORMS) {
    const mine = spans.filter((e) => lanes.get(e.pid) === p);
    const expected = graphSteps.filter((v) => v.name.startsWith(`[${p} `));
    assert.equal(expected.length, 4, `FROM, RUN, COPY, RUN for ${p}`);
    assert.deepEqual(mine.map((e) => e.name).sort(), expected.map((v) => v.name).sort());
    const emulated = mine.filter((e) => e.cat?.split(",").includes("emulated")).length;
    // this host is amd64: arm64's RUN steps ran under QEMU
    assert.equal(emulated, p === "linux/arm64" ? 2 : 0, `emulated spans of ${p}`);
  }

  // timeline: renders in headless Chromium without console errors, one bar per step per platform
  const page = join(dir, "timeline.html");
  await history(["timeline", okRef, "-o", page]);
  const { dom, console } = await chromiumDom(page);
  assert.deepEqual(console, [], "no console messages");
  for (const p of PLATFORMS) {
    const bars = [...dom.matchAll(/<rect class="bar [^"]*" data-platform="([^"]*)"/g)].filter(
      (m) => m[1] === p,
    );
    assert.equal(bars.length, 4, `bars of ${p}`);
  }
  assert.match(dom, /class="step critical"/);
});

test("a SIGKILLed build leaves a canceled record; the history stays readable", async () => {
  const slow = await writeContext(join(dir, "slow"), {
    Dockerfile: `FROM ${reg}/base/busybox
RUN echo start && sleep 1241
`,
  });
  const child = await startKiln(["build", "--progress", "rawjson", "."], opts(slow));
  const done = collect(child);
  await stderrSays(child, /"type":"log".*"data":"start/);
  child.kill("SIGKILL");
  assert.equal((await done).signal, "SIGKILL");

  const records = await ls();
  assert.deepEqual(
    records.map((r) => [r.name, r.status]),
    [
      ["slow", "canceled"],
      ["broken", "error"],
      ["app", "completed"],
    ],
    "the killed build reads as canceled, never running; the others are untouched",
  );
  const logs = await history(["logs"]);
  assert.match(logs, /^#\d+ \d\.\d{3} start$/m, "what it printed before it died");
});

test("export/import carry a record to another state dir; rm removes it", async () => {
  const bundle = join(dir, "record.json");
  await history(["export", okRef, "-o", bundle]);
  const other = await mkdtemp(join(tmpdir(), "kiln-history-import-"));
  try {
    assert.equal((await history(["import", bundle], other)).trim(), okRef);
    const [line] = await ls(other);
    assert.deepEqual([line?.ref, line?.status], [okRef, "completed"]);
    assert.deepEqual((await inspect(okRef, other)).Steps, okSteps);
    const again = await collect(await startKiln(["history", "import", bundle], opts(dir, other)));
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    assert.equal((await history(["rm", okRef], other)).trim(), okRef);
    assert.deepEqual(await ls(other), []);
  } finally {
    await rm(other, { recursive: true, force: true });
  }
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The page's DOM after load, and the console messages Chromium logged for it. */
async function chromiumDom(file: string): Promise<{ dom: string; console: string[] }> {
  const profile = await mkdtemp(join(tmpdir(), "kiln-chromium-"));
  const log = join(profile, "stderr.log");
  try {
    const dom = await run("sh", [
      "-c",
      'log=$0; exec chromium "$@" 2>"$log"',
      log,
      // as root, in a container: no sandbox; nothing that reaches the network
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--enable-logging=stderr",
      "--v=0",
      "--window-size=1280,900",
      "--dump-dom",
      `file://${file}`,
    ]);
    const stderr = await readFile(log, "utf8");
    return { dom, console: stderr.split("\n").filter((l) => /:CONSOLE[:(]/.test(l)) };
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}
