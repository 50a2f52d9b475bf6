import { test } from "node:test";
import assert from "node:assert/strict";
import { vertex, type Vertex } from "../../../src/graph/index.js";
import {
  Solver,
  type ResultCache,
  type RunContext,
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
  /** names of steps whose key reads content, and the content key each resolves to */
  readonly content = new Map<string, Promise<string>>();
  /** names of steps that read inputs by content: those inputs' indexes */
  readonly byContent = new Map<string, number[]>();
  /** what a step reads from an input by content: its checksum, by the step's name */
  readonly sums = new Map<string, string>();
  checksums: string[] = [];
  constructor(private readonly failOn?: string) {}
  contentInputs(v: Vertex): number[] {
    return this.byContent.get(v.name) ?? [];
  }
  inputChecksum(v: Vertex, index: number): Promise<string> {
    this.checksums.push(`${v.name}:${index}`);
    return Promise.resolve(this.sums.get(v.name) ?? "sum");
  }
  contentKey(v: Vertex): Promise<string | undefined> {
    return this.content.get(v.name) ?? Promise.resolve(undefined);
  }
  keyReadsContent(v: Vertex): boolean {
    return this.content.has(v.name);
  }
  emulated(): boolean {
    return false;
  }
  async run(v: Vertex, inputs: string[], ctx?: RunContext): Promise<string> {
    this.runs.push(v.name);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise((r) => setTimeout(r, 5));
    this.active--;
    if (ctx?.signal.aborted) throw new KilnError("E_CANCELED", `${v.name} canceled`);
    if (v.name === this.failOn) throw new KilnError("E_STEP_FAILED", `${v.name} failed`);
    const args = v.op.kind === "exec" ? v.op.args.join(" ") : v.op.kind;
    return [...inputs, args].join("|");
  }
}

class MapCache implements ResultCache<string> {
  readonly map = new Map<string, string>();
  readonly contentKeys = new Map<string, string>();
  load(key: string): Promise<string | undefined> {
    return Promise.resolve(this.map.get(key));
  }
  save(key: string, r: string, contentKey?: string): Promise<void> {
    this.map.set(key, r);
    if (contentKey === undefined) this.contentKeys.delete(key);
    else this.contentKeys.set(key, contentKey);
    return Promise.resolve();
  }
  contentKeyOf(key: string): Promise<string | undefined> {
    return Promise.resolve(this.contentKeys.get(key));
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

/** builder → (copy from it onto base) → after: the shape of a COPY --from and what follows. */
function copyFrom(builderArgs: string[]): { copy: Vertex; after: Vertex } {
  const base = vertex(
    { kind: "image", ref: "r@sha256:1", manifestDigest: "sha256:1" },
    [],
    amd64,
    "base",
  );
  const builder = exec(builderArgs, base, amd64, "builder");
  const copy = vertex(
    { kind: "exec", args: ["copy"], env: [], cwd: "/", user: "0", network: "default", mounts: [] },
    [base, builder],
    amd64,
    "copy",
  );
  return { copy, after: exec(["after"], copy, amd64, "after") };
}

function contentWorker(sum = "sum"): StringWorker {
  const w = new StringWorker();
  w.byContent.set("copy", [1]);
  w.sums.set("copy", sum);
  return w;
}

test("a stage re-run with the same output leaves the steps that read it by content cached", async () => {
  const cache = new MapCache();
  const first = contentWorker();
  await new Solver(first, cache, new Recorder()).solve([copyFrom(["make", "v1"]).after]);
  assert.deepEqual(first.runs, ["base", "builder", "copy", "after"]);

  // the builder's definition changed, what copy reads from it did not
  const w = contentWorker();
  const rec = new Recorder();
  const { copy, after } = copyFrom(["make", "v2"]);
  await new Solver(w, cache, rec).solve([after]);
  assert.deepEqual(w.runs, ["builder"]);
  assert.ok(rec.events.includes("cached copy") && rec.events.includes("cached after"));
  assert.deepEqual(w.checksums, ["copy:1"]);

  // the hit was recorded under the new cache keys: the next build reads no content
  const again = contentWorker();
  await new Solver(again, cache, new Recorder()).solve([after]);
  assert.deepEqual([again.runs, again.checksums], [[], []]);

  // what copy reads changed: it and what follows run
  const changed = contentWorker("other");
  await new Solver(changed, cache, new Recorder()).solve([copyFrom(["make", "v3"]).after]);
  assert.deepEqual(changed.runs, ["builder", "copy", "after"]);

  // a content key is recorded beside the cache key, made from the parts it read
  const solver = new Solver(contentWorker(), new MapCache(), new Recorder());
  await solver.solve([after]);
  const records = await solver.records(copy);
  assert.equal(records.length, 2);
  assert.equal(records[0]!.key, await solver.cacheKey(copy));
  assert.notEqual(records[1]!.key, records[0]!.key);
  assert.equal(
    (await solver.records(after)).length,
    2,
    "after's input was found by its content key",
  );
});

test("noCache on a stage read by content re-runs it, not what reads the same content from it", async () => {
  const cache = new MapCache();
  const { copy, after } = copyFrom(["make"]);
  await new Solver(contentWorker(), cache, new Recorder()).solve([after]);
  const builder = copy.inputs[1]!;
  const w = contentWorker();
  await new Solver(w, cache, new Recorder(), { noCache: (v) => v.digest === builder.digest }).solve(
    [after],
  );
  assert.deepEqual(w.runs, ["builder"]);
  // with its output changed, they run
  const changed = contentWorker("other");
  await new Solver(changed, cache, new Recorder(), {
    noCache: (v) => v.digest === builder.digest,
  }).solve([after]);
  assert.deepEqual(changed.runs, ["builder", "copy", "after"]);
  // noCache on the reading step itself: it runs, and so does what follows
  const forced = contentWorker("other");
  await new Solver(forced, cache, new Recorder(), {
    noCache: (v) => v.digest === copy.digest,
  }).solve([after]);
  assert.deepEqual(forced.runs, ["copy", "after"]);
});

test("a step found by its cache key counts, in its dependants' content keys, by the content key saved with it", async () => {
  const { after } = copyFrom(["make"]);
  const base = vertex(
    { kind: "image", ref: "r@sha256:2", manifestDigest: "sha256:2" },
    [],
    amd64,
    "base2",
  );
  const other = exec(["other"], base, amd64, "other");
  // after (made under a content key: its input copy has one) is copy2's base
  const copy2 = vertex(
    { kind: "exec", args: ["copy2"], env: [], cwd: "/", user: "0", network: "default", mounts: [] },
    [after, other],
    amd64,
    "copy2",
  );
  const worker = () => {
    const w = contentWorker();
    w.byContent.set("copy2", [1]);
    return w;
  };
  const cache = new MapCache();
  await new Solver(worker(), cache, new Recorder()).solve([copy2]);
  // other re-runs (same output); after is found by its cache key
  const w = worker();
  await new Solver(w, cache, new Recorder(), { noCache: (v) => v.digest === other.digest }).solve([
    copy2,
  ]);
  assert.deepEqual(w.runs, ["other"]);
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

test("a step stopped because another failed shows as canceled, whatever error its stop raised", async () => {
  // like a RUN whose container is killed: its own error, not a cancellation
  class KilledWorker extends StringWorker {
    override async run(v: Vertex, inputs: string[], ctx?: RunContext): Promise<string> {
      if (v.name !== "slow") return super.run(v, inputs, ctx);
      await new Promise((r) => setTimeout(r, 50));
      if (ctx?.signal.aborted) throw new KilnError("E_EXEC_ABORTED", "container c1: aborted");
      return "slow";
    }
  }
  const rec = new Recorder();
  await assert.rejects(
    new Solver(new KilledWorker("bad"), new MapCache(), rec).solve([
      exec(["bad"], undefined),
      exec(["slow"], undefined),
    ]),
    (e: unknown) => e instanceof KilnError && e.message === "bad failed",
  );
  assert.ok(rec.events.includes("error bad: bad failed"), rec.events.join("\n"));
  assert.ok(rec.events.includes("error slow: canceled"), rec.events.join("\n"));
});

test("with speculate, the steps before a key that waits for content run while it is read", async () => {
  const a = exec(["a"], undefined);
  const copy = exec(["copy"], exec(["b"], a));
  const root = exec(["final"], copy);
  const w = new StringWorker();
  let read!: (key: string) => void;
  w.content.set("copy", new Promise((resolve) => (read = resolve)));
  const solving = new Solver(w, new MapCache(), new Recorder(), { speculate: true }).solve([root]);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(w.runs, ["a", "b"], "a and b ran before copy's content was read");
  read("checksum");
  assert.deepEqual(await solving, ["a|b|copy|final"]);
  assert.deepEqual(w.runs, ["a", "b", "copy", "final"]);

  // without speculate nothing starts before every key is known
  const w2 = new StringWorker();
  let read2!: (key: string) => void;
  w2.content.set("copy", new Promise((resolve) => (read2 = resolve)));
  const solving2 = new Solver(w2, new MapCache(), new Recorder()).solve([root]);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(w2.runs, []);
  read2("checksum");
  await solving2;
});

test("steps started ahead of a step that then hits the cache are canceled before solve returns", async () => {
  const a = exec(["a"], undefined);
  const copy = exec(["copy"], a);
  const root = exec(["final"], copy);
  const cache = new MapCache();
  const w = new StringWorker();
  w.content.set("copy", Promise.resolve("checksum"));
  await new Solver(w, cache, new Recorder()).solve([root]);
  // only the last step's record is left (as after a pruning that kept it)
  const finalKey = await new Solver(w, cache, new Recorder()).cacheKey(root);
  for (const k of [...cache.map.keys()]) if (k !== finalKey) cache.map.delete(k);
  const w2 = new StringWorker();
  w2.content.set(
    "copy",
    new Promise((r) =>
      setTimeout(() => {
        r("checksum");
      }, 20),
    ),
  );
  const [out] = await new Solver(w2, cache, new Recorder(), { speculate: true }).solve([root]);
  assert.equal(out, "a|copy|final");
  assert.equal(w2.active, 0, "nothing still runs once solve has returned");
  assert.ok(!w2.runs.includes("final"));
});
