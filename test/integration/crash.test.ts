// Crash safety (issue 6): SIGKILL at seeded-random points of 20 builds (and of a few prunes)
// sharing one state dir must leave a cache the next build uses or repairs — never a wrong
// result, never an unreadable store. The survivor's image is unpacked with umoci and its file
// tree compared, entry by entry, with the same build's in a fresh state dir.
// KILN_CRASH_SEED picks another sequence of kill points.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstat, readFile, readdir, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  collect,
  kilnOk,
  mountsBelow,
  removeTree,
  runcContainers,
  startKiln,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
  type KilnOptions,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
const ITERATIONS = 20;
/** The kill comes up to this long after the chosen progress event (within a step). */
const MAX_DELAY_MS = 500;

/** mulberry32: a small seeded PRNG, so a failing sequence of kill points can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every entry of a tree: type, mode, owner, and content hash or link target (not times). */
async function treeOf(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    const path = join(root, rel);
    const st = await lstat(path);
    let what = "";
    if (st.isFile()) {
      what = createHash("sha256")
        .update(await readFile(path))
        .digest("hex");
    } else if (st.isSymbolicLink()) what = `-> ${await readlink(path)}`;
    out.push(`${rel || "."} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${what}`);
    if (st.isDirectory()) for (const n of (await readdir(path)).sort()) await visit(join(rel, n));
  };
  await visit("");
  return out;
}

async function unpacked(layout: string, bundle: string): Promise<string[]> {
  await run("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
  return treeOf(join(bundle, "rootfs"));
}

/**
 * Starts kiln and SIGKILLs it `delayMs` after its `events`-th progress event (counting from
 * the start when 0): kill points follow the build's phases whatever the machine's speed.
 */
async function killAt(
  args: string[],
  o: KilnOptions,
  events: number,
  delayMs: number,
): Promise<string> {
  const child = await startKiln(args, o);
  const done = collect(child);
  let seen = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer ??= setTimeout(() => child.kill("SIGKILL"), delayMs);
  };
  if (events === 0) arm();
  child.stderr!.on("data", (c: Buffer) => {
    seen += c
      .toString("utf8")
      .split("\n")
      .filter((l) => l.startsWith("{")).length;
    if (seen >= events) arm();
  });
  const r = await done;
  clearTimeout(timer);
  return r.signal === "SIGKILL" ? `killed after ${seen} events` : `finished (exit ${r.code})`;
}

test("SIGKILL at random points of 20 builds: the next build is right and the store readable", async (t) => {
  const seed = Number(process.env.KILN_CRASH_SEED ?? 20261127);
  const random = prng(seed);
  const dir = await tempDir("crash");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox AS builder
ARG V
RUN mkdir -p /out && echo "builder $V" > /out/b.txt && seq 1 2000 > /out/seq.txt && ln -s b.txt /out/link
FROM ${reg}/base/busybox
ARG V
COPY one.txt two.txt /app/
COPY --from=builder /out /app/out
RUN echo "final $V" > /app/final.txt && rm /bin/false && chmod 600 /app/one.txt
`,
      "one.txt": "one\n",
      "two.txt": "two\n",
    });
    const build = (v: number, dest: string) => [
      "build",
      "--build-arg",
      `V=${v}`,
      "-o",
      `type=oci,dest=${dest},tar=false,name=latest`,
      // one manifest under "latest" for umoci (provenance would make it an index of two)
      "--provenance=false",
      ".",
    ];

    // the reference: the same build in a fresh state dir
    const ref = await kilnOk(build(1, join(dir, "ref")), {
      root: join(dir, "fresh"),
      cwd: ctx,
    });
    const expected = await unpacked(join(dir, "ref"), join(dir, "ref-bundle"));
    assert.ok(expected.some((l) => l.startsWith("app/final.txt ")));
    assert.ok(!expected.some((l) => l.startsWith("bin/false ")));

    const events = ref.events.length;
    const o = { root: join(dir, "root"), cwd: ctx };
    const outcomes: string[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      // V cycles so later kills meet partly cached builds, and some meet fresh steps
      const at = Math.floor(random() * (events + 1));
      const delay = Math.floor(random() * MAX_DELAY_MS);
      const what = await killAt(
        [...build(i % 3, join(dir, `out-${i}`)), "--progress", "rawjson"],
        o,
        at,
        delay,
      );
      outcomes.push(`build ${i} V=${i % 3} event ${at} +${delay}ms: ${what}`);
      if (i % 7 === 6) {
        const d = Math.floor(random() * 1500);
        const p = await killAt(["prune", "--all", "--force"], o, 0, d);
        outcomes.push(`prune +${d}ms: ${p}`);
      }
    }
    t.diagnostic(`seed ${seed}\n${outcomes.join("\n")}`);

    const final = await kilnOk(build(1, join(dir, "final")), o);
    const cached = vertexRecords(final.events).filter((v) => v.cached).length;
    t.diagnostic(`final build: ${cached} cached steps`);
    assert.deepEqual(await unpacked(join(dir, "final"), join(dir, "final-bundle")), expected);

    // nothing of the crashed builds is left running or mounted
    assert.deepEqual(await runcContainers(o.root), []);
    assert.deepEqual(await mountsBelow(o.root), []);

    // the store is readable: du works and a prune frees exactly what du(1) sees go
    const du = await collect(await startKiln(["du", "--json"], o));
    assert.equal(du.code, 0, du.stderr);
    // du(1) without the metadata database, which kiln does not count (see docs/design.md)
    const duOf = async (d: string) =>
      Number((await run("du", ["-sxB1", "--exclude=metadata.db*", d])).split("\t")[0]);
    const before = await duOf(o.root);
    assert.equal((JSON.parse(du.stdout) as { total: number }).total, before);
    const pr = await collect(await startKiln(["prune", "--force"], o));
    assert.equal(pr.code, 0, pr.stderr);
    const freed = Number(/\((\d+) bytes\)/.exec(pr.stdout)?.[1]);
    const after = await duOf(o.root);
    assert.equal(freed, before - after);

    // and builds on from what is left
    await writeFile(join(ctx, "unrelated"), "x");
    await kilnOk(build(1, join(dir, "again")), o);
    assert.deepEqual(await unpacked(join(dir, "again"), join(dir, "again-bundle")), expected);
  } finally {
    await removeTree(dir);
  }
});
