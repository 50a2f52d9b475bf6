import { test } from "node:test";
import assert from "node:assert/strict";
import { vertex, type Vertex } from "../../../src/graph/index.js";
import {
  Solver,
  type ResultCache,
  type VertexProgress,
  type Worker,
} from "../../../src/solver/index.js";
import { KilnError } from "../../../src/errors.js";

const amd64 = { os: "linux", architecture: "amd64" };
const arm64 = { os: "linux", architecture: "arm64" };

/** Runs exec ops by concatenating their args onto the inputs' strings. */
class StringWorker implements Worker<string> {
  runs: string[] = [];
  active = 0;
  maxActive = 0;
  constructor(private readonly failOn?: string) {}
  contentKey(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }
  emulated(): boolean {
    return false;
  }
  async run(v: Vertex, inputs: string[]): Promise<string> {
    this.runs.push(v.name);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, 5));
    this.active--;
    if (v.name === this.failOn) throw new KilnError("E_STEP_FAILED", `${v.name} failed`);
    const args = v.op.kind === "exec" ? v.op.args.join(" ") : v.op.kind;
    return [...inputs, args].join("|");
  }
}

class MapCache implements ResultCache<string> {
  readonly map = new Map<string, string>();
  load(key: string): Promise<string | undefined> {
    return Promise.resolve(this.map.get(key));
  }
  save(key: string, r: string): Promise<void> {
    this.map.set(key, r);
    return Promise.resolve();
  }
}

class Recorder implements VertexProgress {
  events: string[] = [];
  announce(v: Vertex): void {
    this.events.push(`announce ${v.name}`);
  }
  started(v: Vertex): void {
    this.events.push(`start ${v.name}`);
  }
  cached(v: Vertex): void {
    this.events.push(`cached ${v.name}`);
  }
  completed(v: Vertex): void {
    this.events.push(`done ${v.name}`);
  }
  failed(v: Vertex, m: string): void {
    this.events.push(`error ${v.name}: ${m}`);
  }
}

function exec(
  args: string[],
  input: Vertex | undefined,
  platform = amd64,
  name = args.join(" "),
): Vertex {
  return vertex(
    { kind: "exec", args, env: [], cwd: "/", user: "0", network: "default", mounts: [] },
    input ? [input] : [],
    platform,
    name,
  );
}

test("identical vertices from two platform graphs run once", async () => {
  const base = vertex(
    { kind: "image", ref: "r@sha256:1", manifestDigest: "sha256:1" },
    [],
    amd64,
    "base",
  );
  const shared = exec(["build"], base);
  // the same definition built again by the second platform's conversion
  const shared2 = exec(
    ["build"],
    vertex({ kind: "image", ref: "r@sha256:1", manifestDigest: "sha256:1" }, [], amd64, "base"),
  );
  assert.equal(shared.digest, shared2.digest);
  const a = exec(["final"], shared, amd64, "final amd64");
  const b = exec(["final"], shared2, arm64, "final arm64");
  assert.notEqual(a.digest, b.digest, "platform is part of the digest");
  const w = new StringWorker();
  const rec = new Recorder();
  const out = await new Solver(w, new MapCache(), rec).solve([a, b]);
  assert.deepEqual(out, ["image|build|final", "image|build|final"]);
  assert.equal(w.runs.filter((n) => n === "build").length, 1);
  assert.equal(w.runs.length, 4);
});

test("a second solve with the same cache runs nothing and reports cached", async () => {
  const root = exec(["b"], exec(["a"], undefined));
  const cache = new MapCache();
  await new Solver(new StringWorker(), cache, new Recorder()).solve([root]);
  const w = new StringWorker();
  const rec = new Recorder();
  const [out] = await new Solver(w, cache, rec).solve([root]);
  assert.equal(out, "a|b");
  assert.deepEqual(w.runs, []);
  assert.ok(rec.events.includes("cached b"));
  assert.ok(rec.events.includes("cached a"), "inputs of a cache hit are reported cached");
});

test("noCache forces a run and everything downstream of a changed input reruns", async () => {
  const a = exec(["a"], undefined);
  const root = exec(["b"], a);
  const cache = new MapCache();
  await new Solver(new StringWorker(), cache, new Recorder()).solve([root]);
  const w = new StringWorker();
  await new Solver(w, cache, new Recorder(), { noCache: (v) => v.digest === a.digest }).solve([
    root,
  ]);
  // b's cached result may hold files from an older run of a, so it runs again too
  assert.deepEqual(w.runs, ["a", "b"]);
  const changed = exec(["b"], exec(["a2"], undefined));
  const w2 = new StringWorker();
  await new Solver(w2, cache, new Recorder()).solve([changed]);
  assert.deepEqual(w2.runs, ["a2", "b"]);
});

test("parallelism is bounded", async () => {
  const leaves = Array.from({ length: 8 }, (_, i) => exec([`leaf${i}`], undefined));
  const w = new StringWorker();
  await new Solver(w, new MapCache(), new Recorder(), { maxParallelism: 3 }).solve(leaves);
  assert.equal(w.runs.length, 8);
  assert.ok(w.maxActive <= 3, `max active ${w.maxActive}`);
});

test("the first failure is reported with the step name and fails the solve", async () => {
  const bad = exec(["bad"], undefined);
  const good = exec(["after"], exec(["slow"], undefined));
  const rec = new Recorder();
  await assert.rejects(
    new Solver(new StringWorker("bad"), new MapCache(), rec).solve([bad, good]),
    (e: unknown) => e instanceof KilnError && e.message === "bad failed",
  );
  assert.ok(rec.events.includes("error bad: bad failed"));
});
