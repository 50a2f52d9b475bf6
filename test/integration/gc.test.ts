// `kiln du` and `kiln prune` on real builds: du's total is what du(1) measures, the bytes a prune
// reports are exactly what du(1) sees the state dir shrink by, a plain prune keeps what named
// images use (their rebuild stays fully cached), --all / until / --keep-storage, and the lock
// between builds and prunes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  collect,
  kilnOk,
  removeTree,
  startKiln,
  stderrSays,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
  type KilnOptions,
  type KilnResult,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";
import Database from "better-sqlite3";
import { acquirePruneLock } from "../../src/engine/gc.js";
import { MetadataStore } from "../../src/metadata/index.js";
import { humanSize, parseDuration, parseSize } from "../../src/cli/du.js";

const reg = testRegistry();

/**
 * du -sx in bytes (each hard-linked file once): the independent measure. Without the metadata
 * database, which kiln does not count (its size moves with its journal, not with records).
 */
async function measured(dir: string): Promise<number> {
  return Number((await run("du", ["-sxB1", "--exclude=metadata.db*", dir])).split("\t")[0]);
}

async function kilnCmd(args: string[], o: KilnOptions): Promise<KilnResult> {
  const r = await collect(await startKiln(args, o));
  assert.equal(r.code, 0, `kiln ${args.join(" ")}: ${r.stderr}`);
  return r;
}

interface DuJson {
  total: number;
  reclaimable: number;
  reclaimableAll: number;
  shared: number;
  records: { id: string; type: string; size: number; reclaimable: boolean; shared: boolean }[];
}

async function du(o: KilnOptions): Promise<DuJson> {
  return JSON.parse((await kilnCmd(["du", "--json"], o)).stdout) as DuJson;
}

/** Runs a prune and checks its figure against du(1); returns the bytes freed. */
async function pruneChecked(args: string[], o: KilnOptions): Promise<number> {
  const before = await measured(o.root);
  const r = await kilnCmd(["prune", "--force", ...args], o);
  const m = /Total: \S+ \((\d+) bytes\)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const freed = Number(m[1]);
  assert.equal(freed, before - (await measured(o.root)), `freed bytes of prune ${args.join(" ")}`);
  return freed;
}

const ran = (r: KilnResult) => vertexRecords(r.events).filter((v) => v.starts > 0);

test("du and prune: figures match du(1), named images keep their cache, --all/until/--keep-storage", async () => {
  const dir = await tempDir("gc");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox AS builder
RUN echo built > /built && head -c 200000 /dev/urandom > /noise
FROM ${reg}/base/busybox
COPY --from=builder /built /built
COPY a.txt /a.txt
RUN cat /a.txt /built > /both
`,
      // shares no record with the named image (the base snapshot is most of that one's cache)
      "other.Dockerfile": `FROM scratch
COPY b.txt /b
COPY other.txt /other
`,
      "a.txt": "A\n",
      "b.txt": "B\n",
      "other.txt": "other\n".repeat(50000),
    });
    const o = { root: join(dir, "root"), cwd: ctx };
    // no provenance: its per-build blobs would change the reclaimable sizes this test reckons with
    const app = ["build", "--provenance=false", "-t", "local/app:1", "."];
    const other = ["build", "-f", "other.Dockerfile", "-o", `type=local,dest=${dir}/out`, "."];
    await kilnOk(app, o);
    await kilnOk(other, o);

    const report = await du(o);
    assert.equal(report.total, await measured(o.root));
    assert.ok(report.shared > 0 && report.reclaimable > 0, JSON.stringify(report));
    assert.ok(report.reclaimableAll > report.reclaimable);
    const types = new Set(report.records.map((r) => r.type));
    for (const t of ["result", "source", "exec", "file", "blob", "layer-blob"]) {
      assert.ok(types.has(t), `du lists ${t} records`);
    }
    const verbose = await kilnCmd(["du", "--verbose"], o);
    assert.match(verbose.stdout, /Last used: +\d+ seconds? ago|Last used: +just now/);

    // recent records are kept by until=1h: nothing to free
    assert.equal(await pruneChecked(["--filter", "until=1h"], o), 0);

    const freed = await pruneChecked([], o);
    assert.equal(freed, report.reclaimable);
    const after = await du(o);
    assert.equal(after.reclaimable, 0);
    assert.ok(after.records.every((r) => r.shared || r.type === "leftover" || !r.reclaimable));

    // the named image's build is still cached to the end
    const again = await kilnOk(app, o);
    assert.deepEqual(
      ran(again).map((v) => v.name),
      [],
    );

    // --keep-storage: the least recently used records go until the state dir fits. The other
    // build, made last, is the most recently used and shares no record with the named image's
    // cache: freeing half of that cache never needs it. (Records of one build are used within
    // milliseconds of each other, in no set order, so the test does not reckon with an order
    // inside one build.)
    await kilnOk(other, o);
    const full = await du(o);
    const keep = full.total - Math.floor((full.reclaimableAll - full.reclaimable) / 2);
    await pruneChecked(["--all", "--keep-storage", String(keep)], o);
    const kept = await measured(o.root);
    assert.ok(kept <= keep, `${kept} <= ${keep}`);
    assert.ok(kept > full.total - full.reclaimableAll, "something was kept");
    assert.deepEqual(
      ran(await kilnOk(other, o)).map((v) => v.name),
      [],
      "the most recently used build is still cached",
    );

    // --all: only the named image's own blobs stay, and they are all there
    await pruneChecked(["--all"], o);
    const bare = await du(o);
    assert.equal(bare.reclaimableAll, 0);
    const index = JSON.parse(await readFile(join(o.root, "content", "index.json"), "utf8")) as {
      manifests: { digest: string }[];
    };
    const blobs = new Set(await readdir(join(o.root, "content", "blobs", "sha256")));
    // the named image: its index, manifests (the image's and its provenance attestation's),
    // configs and layers
    const reachable = new Set<string>();
    const walk = async (digest: string): Promise<void> => {
      reachable.add(digest.slice(7));
      const doc = JSON.parse(
        await readFile(join(o.root, "content", "blobs", "sha256", digest.slice(7)), "utf8"),
      ) as {
        manifests?: { digest: string }[];
        config?: { digest: string };
        layers?: { digest: string }[];
      };
      for (const m of doc.manifests ?? []) await walk(m.digest);
      for (const d of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])])
        reachable.add(d.digest.slice(7));
    };
    await walk(index.manifests[0]!.digest);
    for (const d of reachable) assert.ok(blobs.has(d), `named image blob ${d} kept`);
    assert.deepEqual(
      [...blobs].sort(),
      [...reachable].sort(),
      "nothing but the named image's blobs",
    );
    assert.deepEqual(MetadataStore.open(o.root).results(), [], "no cache record is left");
  } finally {
    await removeTree(dir);
  }
});

test("prune waits for running builds; builds wait for a prune", async () => {
  const dir = await tempDir("gc-lock");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
ARG N
RUN --mount=type=bind,target=/ctx sh -c 'while [ ! -e /ctx/go ]; do sleep 0.1; done; echo $N > /n'
`,
    });
    const o = { root: join(dir, "root"), cwd: ctx };

    // a prune started while a build runs waits for it (the build waits for the test to see
    // that through a file in its bind-mounted context); the build's result is intact
    const building = collect(
      await startKiln(
        [
          "build",
          "--build-arg",
          "N=1",
          "-o",
          `type=local,dest=${dir}/o1`,
          "--progress",
          "rawjson",
          ".",
        ],
        o,
      ),
    );
    await until(async () => (await buildLeases(o.root)) > 0);
    const pruneChild = await startKiln(["prune", "--all", "--force"], o);
    await stderrSays(pruneChild, "waiting for 1 running build");
    const pruning = collect(pruneChild);
    await writeFile(join(ctx, "go"), "");
    const b = await building;
    assert.equal(b.code, 0, b.stderr);
    assert.equal(await readFile(join(dir, "o1", "n"), "utf8"), "1\n");
    assert.equal((await pruning).code, 0);

    // a build started while a prune holds the lock waits, then runs
    const release = await acquirePruneLock(o.root);
    const child = await startKiln(
      [
        "build",
        "--build-arg",
        "N=2",
        "-o",
        `type=local,dest=${dir}/o2`,
        "--progress",
        "rawjson",
        ".",
      ],
      o,
    );
    await stderrSays(child, "waiting for `kiln prune` to finish");
    const done = collect(child);
    await release();
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(dir, "o2", "n"), "utf8"), "2\n");

    // a dead prune's lease (its process was SIGKILLed) does not block anyone
    const db = new Database(join(o.root, "metadata.db"));
    db.prepare(
      "INSERT INTO leases (kind, owner, created) VALUES ('prune', '999999999-1', 0)",
    ).run();
    db.close();
    await kilnOk(["build", "--build-arg", "N=3", "-o", `type=local,dest=${dir}/o3`, "."], o);
    assert.equal(MetadataStore.open(o.root).liveLeases("prune"), 0, "the dead lease was swept");
  } finally {
    await removeTree(dir);
  }
});

test("size, duration and human size formats", () => {
  assert.equal(parseSize("10GB"), 10 * 1024 ** 3);
  assert.equal(parseSize("512m"), 512 * 1024 ** 2);
  assert.equal(parseSize("1.5KiB"), 1536);
  assert.equal(parseSize("1234"), 1234);
  assert.throws(() => parseSize("ten"), /invalid size/);
  assert.equal(parseDuration("24h"), 86_400_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("90s"), 90_000);
  assert.throws(() => parseDuration("1d"), /invalid duration/);
  assert.equal(humanSize(0), "0B");
  assert.equal(humanSize(1234567), "1.235MB");
  assert.equal(humanSize(4096), "4.096kB");
});

/** Build leases in the state dir's metadata (0 before the first build made the database). */
async function buildLeases(root: string): Promise<number> {
  if (!(await readdir(root).catch((): string[] => [])).includes("metadata.db")) return 0;
  return MetadataStore.open(root).liveLeases("build");
}

/** Polls a condition (for ordering, not timing: no assertion depends on how long it takes). */
async function until(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
}
