import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import {
  HistoryRecorder,
  HistoryStore,
  newRef,
  recordBuild,
  recordRequest,
  type BuildRecord,
} from "../../../src/history/index.js";
import { importBundle, writeBundle } from "../../../src/history/bundle.js";
import { STEP_LOG_LIMIT } from "../../../src/history/recorder.js";
import { KilnError } from "../../../src/errors.js";
import type { BuildRequest, BuildResult } from "../../../src/request/index.js";
import { RecordingSink } from "../../../src/progress/index.js";
import { ownerTag } from "../../../src/process/index.js";

async function withStore(fn: (s: HistoryStore, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "kiln-history-"));
  try {
    await fn(HistoryStore.at(root), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function request(contextDir = "/nonexistent/app"): BuildRequest {
  return {
    contextDir,
    dockerfile: "Dockerfile",
    namedContexts: {},
    platforms: [{ os: "linux", architecture: "arm64", variant: "v8" }],
    buildArgs: { VERSION: "1" },
    tags: ["r/app:1"],
    labels: {},
    outputs: [],
    noCache: false,
    noCacheFilter: [],
    pull: false,
    secrets: { token: Buffer.from("s3cr3t-value-never-recorded") },
    ssh: { default: "/run/agent.sock" },
    network: "default",
    extraHosts: [],
    ignoreBinfmt: false,
    insecureRegistries: [],
  };
}

async function record(over: Partial<BuildRecord> = {}): Promise<BuildRecord> {
  const req = recordRequest(request());
  return {
    version: 1,
    ref: newRef(),
    name: "app",
    status: "completed",
    createdAt: Date.now(),
    completedAt: Date.now(),
    owner: await ownerTag(),
    host: "h",
    request: req,
    dockerfile: { name: "Dockerfile" },
    ...over,
  };
}

const result: BuildResult = {
  platforms: [],
  digest: "sha256:aa",
  descriptor: { mediaType: "m", digest: "sha256:aa", size: 1 },
  imageNames: ["r/app:1"],
  durationMs: 1,
};

test("a recorded build: events on disk as they come, outcome in the record, no secret", async () => {
  await withStore(async (store, root) => {
    const progress = new RecordingSink();
    const ref = newRef();
    let seenDuring: string | undefined;
    await recordBuild({ root, ref, request: request(), progress }, (sink) => {
      sink.write({ type: "vertex", id: "v", name: "RUN x", started: 1 });
      sink.write({ type: "log", vertex: "v", stream: 1, data: "out\n", timestamp: 2 });
      return readFile(join(store.dir, ref, "events.jsonl"), "utf8").then((t) => {
        seenDuring = t;
        sink.write({ type: "vertex", id: "v", name: "RUN x", completed: 3 });
        return result;
      });
    });
    assert.equal(seenDuring?.split("\n").length, 3, "written before the build ended");
    assert.equal(progress.events.length, 3, "the build's own sink saw every event");
    const r = await store.resolve(ref);
    assert.equal(r.status, "completed");
    assert.deepEqual(r.steps, { total: 1, completed: 1, cached: 0 });
    assert.deepEqual(r.request.secrets, ["token"]);
    assert.deepEqual(r.request.platforms, ["linux/arm64/v8"]);
    const onDisk = await readFile(join(store.dir, ref, "record.json"), "utf8");
    assert.doesNotMatch(onDisk, /s3cr3t/);
  });
});

test("a failed or canceled build is recorded with its error, and the error still surfaces", async () => {
  await withStore(async (store, root) => {
    for (const [code, status] of [
      ["E_RUN_FAILED", "error"],
      ["E_CANCELED", "canceled"],
    ] as const) {
      const ref = newRef();
      await assert.rejects(
        recordBuild({ root, ref, request: request(), progress: new RecordingSink() }, () =>
          Promise.reject(new KilnError(code, `${code} happened`)),
        ),
        { code },
      );
      const r = await store.resolve(ref);
      assert.equal(r.status, status);
      assert.equal(r.error?.code, code);
    }
  });
});

test("refs: ^N counts from the newest, prefixes and builder/node/ref resolve, bad ones do not", async () => {
  await withStore(async (store) => {
    const old = await record({ ref: "aaaa1", createdAt: 1000 });
    const mid = await record({ ref: "bbbb2", createdAt: 2000 });
    const last = await record({ ref: "bbbc3", createdAt: 3000 });
    for (const r of [old, mid, last]) await store.create(r);
    assert.equal((await store.resolve(undefined)).ref, "bbbc3");
    assert.equal((await store.resolve("^0")).ref, "bbbc3");
    assert.equal((await store.resolve("^2")).ref, "aaaa1");
    assert.equal((await store.resolve("aaa")).ref, "aaaa1");
    assert.equal((await store.resolve("kiln/host/bbbb2")).ref, "bbbb2");
    await assert.rejects(store.resolve("^3"), { code: "E_HISTORY_NOT_FOUND" });
    await assert.rejects(store.resolve("bbb"), /ambiguous/);
    await assert.rejects(store.resolve("zzz"), { code: "E_HISTORY_NOT_FOUND" });
    assert.throws(() => store.recordDir("../etc"), { code: "E_HISTORY_REF" });
  });
});

test("a running record whose process is gone reads as canceled; a torn last line is skipped", async () => {
  await withStore(async (store) => {
    // pid 1's start time is never 1: the owner is gone
    const r = await record({ status: "running", owner: "1-1", completedAt: undefined });
    await store.create(r);
    const file = join(store.recordDir(r.ref), "events.jsonl");
    await appendFile(
      file,
      `${JSON.stringify({ type: "vertex", id: "v", name: "RUN a", started: r.createdAt + 5, cached: true, completed: r.createdAt + 5 })}\n{"type":"vertex","id":"w","na`,
    );
    const [read] = await store.list();
    assert.equal(read?.status, "canceled");
    assert.equal(read.error?.code, "E_INTERRUPTED");
    assert.deepEqual(read.steps, { total: 1, completed: 1, cached: 1 });
    assert.equal(read.completedAt, r.createdAt + 5);
    // written back once worked out
    const onDisk = JSON.parse(
      await readFile(join(store.recordDir(r.ref), "record.json"), "utf8"),
    ) as BuildRecord;
    assert.equal(onDisk.status, "canceled");
    // a live owner's record stays running, and cannot be removed
    const live = await record({ status: "running", completedAt: undefined });
    await store.create(live);
    assert.equal((await store.resolve(live.ref)).status, "running");
    await assert.rejects(store.remove(live.ref), { code: "E_HISTORY_RUNNING" });
  });
});

test("retention keeps the newest finished records and every running one", async () => {
  await withStore(async (store) => {
    const running = await record({ status: "running", createdAt: 1 });
    await store.create(running);
    for (let i = 0; i < 5; i++) await store.create(await record({ createdAt: 100 + i }));
    const removed = await store.prune({ keep: 2 });
    assert.equal(removed.length, 3);
    const left = await store.list();
    assert.deepEqual(
      left.map((r) => r.createdAt),
      [104, 103, 1],
    );
    assert.deepEqual(
      await store.prune({ olderThanMs: 0 }, 200),
      left.slice(0, 2).map((r) => r.ref),
    );
    assert.deepEqual(
      (await readdir(store.dir)).filter((n) => !n.startsWith(".")),
      [running.ref],
    );
  });
});

test("a step's output past the log limit is clipped, keeping its end", async () => {
  await withStore(async (store) => {
    const r = await record({ status: "running" });
    const rec = await HistoryRecorder.start(store, r);
    const chunk = `${"x".repeat(1023)}\n`;
    for (let i = 0; i < STEP_LOG_LIMIT / 1024 + 200; i++) {
      rec.write({ type: "log", vertex: "v", stream: 1, data: chunk, timestamp: i });
    }
    rec.write({ type: "log", vertex: "v", stream: 2, data: "the real error\n", timestamp: 1e6 });
    rec.write({ type: "vertex", id: "v", name: "RUN big", completed: 2e6, error: "boom" });
    await rec.finish({ error: new KilnError("E_RUN_FAILED", "boom") });
    const events = await store.allEvents(r.ref);
    const logs = events.filter((e) => e.type === "log");
    const bytes = logs.reduce((n, e) => n + Buffer.byteLength(e.data), 0);
    assert.ok(bytes < STEP_LOG_LIMIT + 64 * 1024, `${bytes} bytes kept`);
    assert.match(logs.map((e) => e.data).join(""), /output clipped[\s\S]*the real error\n$/);
  });
});

test("export and import move one record with its events; bad bundles are refused", async () => {
  await withStore(async (store) => {
    const r = await record();
    await store.create(r, [{ type: "vertex", id: "v", name: "RUN a", started: 1, completed: 2 }]);
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (b: Buffer) => chunks.push(b));
    await writeBundle(store, r, out);
    const text = Buffer.concat(chunks).toString("utf8");
    await withStore(async (other) => {
      const imported = await importBundle(other, text, "b.json");
      assert.equal(imported.ref, r.ref);
      assert.equal((await other.resolve(r.ref)).status, "completed");
      assert.deepEqual(await other.allEvents(r.ref), await store.allEvents(r.ref));
      await assert.rejects(importBundle(other, text, "b.json"), { code: "E_HISTORY_EXISTS" });
      const hostile = JSON.parse(text) as { record: { ref: string } };
      hostile.record.ref = "../../escape";
      await assert.rejects(importBundle(other, JSON.stringify(hostile), "h.json"), /bad ref/);
      await assert.rejects(importBundle(other, "{", "x.json"), { code: "E_HISTORY_IMPORT" });
      // a bundle of a build that was still running imports as canceled
      const live = JSON.parse(text) as { record: BuildRecord };
      live.record.ref = "live1";
      live.record.status = "running";
      assert.equal((await importBundle(other, JSON.stringify(live), "l.json")).status, "canceled");
      assert.equal((await other.resolve("live1")).status, "canceled");
    });
  });
});

test("KILN_HISTORY_KEEP=0 records nothing; an unwritable history warns and builds", async () => {
  await withStore(async (store, root) => {
    const progress = new RecordingSink();
    process.env.KILN_HISTORY_KEEP = "0";
    try {
      await recordBuild({ root, ref: newRef(), request: request(), progress }, () =>
        Promise.resolve(result),
      );
    } finally {
      delete process.env.KILN_HISTORY_KEEP;
    }
    assert.deepEqual(await store.list(), []);
    const blocked = join(root, "file");
    await appendFile(blocked, "");
    const r = await recordBuild(
      { root: blocked, ref: newRef(), request: request(), progress },
      () => Promise.resolve(result),
    );
    assert.equal(r, result);
    assert.match(progress.ofType("warning")[0]?.message ?? "", /not recording this build/);
  });
});

test("KILN_HISTORY_KEEP=N keeps the newest N records, the finished build's among them", async () => {
  await withStore(async (store, root) => {
    const refs: string[] = [];
    process.env.KILN_HISTORY_KEEP = "2";
    try {
      for (let i = 0; i < 4; i++) {
        const ref = newRef();
        refs.push(ref);
        await recordBuild(
          { root, ref, request: request(), progress: new RecordingSink() },
          () =>
            // the records are removed beside the build: it does not wait for them
            new Promise((r) => {
              setTimeout(() => {
                r(result);
              }, 5);
            }),
        );
      }
    } finally {
      delete process.env.KILN_HISTORY_KEEP;
    }
    const kept = (await store.list()).map((r) => r.ref);
    assert.deepEqual(kept.sort(), refs.slice(2).sort());
  });
});
