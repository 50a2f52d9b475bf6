// The prune model on a hand-made state dir (no builds): flattened chains live as long as a
// chain that mounts them, parents of kept layers stay, crash leftovers go, hard links count
// once, and every freed figure equals what du(1) sees go.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { link, mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { BuildCache, type FsResult } from "../../src/cache/index.js";
import { ContentStore } from "../../src/content/index.js";
import { MetadataStore } from "../../src/metadata/index.js";
import {
  Snapshotter,
  flatSnapshotId,
  isFlatSnapshot,
  mountsUnder,
  readMountInfo,
} from "../../src/snapshot/index.js";
import { diskUsage, diskUsageReport, prune, type PruneOptions } from "../../src/engine/gc.js";
import type { KilnState } from "../../src/engine/state.js";

async function stateAt(root: string): Promise<KilnState> {
  // a tiny mount option limit, so a chain of a few layers is flattened
  const snapshots = new Snapshotter(join(root, "snapshots"), { optionsLimit: 200 });
  const metadata = MetadataStore.open(root);
  const state: KilnState = {
    root,
    metadata,
    content: await ContentStore.open(join(root, "content"), metadata),
    snapshots,
    cache: new BuildCache(metadata, (id) => snapshots.exists(id)),
    contextHashesDir: join(root, "cache", "context-hashes"),
    probeRecordFile: join(root, "cache", "emulation-probes.json"),
    cacheMountsDir: join(root, "cache-mounts"),
    tmpDir: join(root, "tmp"),
  };
  await mkdir(state.cacheMountsDir, { recursive: true });
  await mkdir(state.tmpDir, { recursive: true });
  return state;
}

/** du(1) of the state dir without the metadata database (kiln does not count it: its size
 * moves with its own journal, not with what a prune removes). */
function du(dir: string): number {
  return Number(
    execFileSync("du", ["-sxB1", "--exclude=metadata.db*", dir], { encoding: "utf8" }).split(
      "\t",
    )[0],
  );
}

async function pruneChecked(state: KilnState, o: PruneOptions): Promise<string[]> {
  // workspaces released so far are removed in the background: du must not see them go
  await state.snapshots.removed();
  const before = du(state.root);
  const r = await prune(state, o);
  assert.equal(r.freed, before - du(state.root), `freed bytes of ${JSON.stringify(o)}`);
  return r.removed.map((x) => x.id).sort();
}

/** Sets when a cache record was last used (as if a build had used it then). */
function usedAt(root: string, key: string, when: Date): void {
  const db = new Database(join(root, "metadata.db"));
  try {
    db.prepare("UPDATE cache_results SET last_used = ? WHERE key = ?").run(when.getTime(), key);
  } finally {
    db.close();
  }
}

async function layer(s: Snapshotter, id: string, parents: string[], kb: number): Promise<void> {
  const l = await s.newEmpty(`new-${id}`, parents);
  await writeFile(join(l.dir, `${id}.bin`), Buffer.alloc(kb * 1024, id));
  await s.commit(l.id, l, id);
}

test("prune: flattened chains, parents, leftovers, hard links, until", async () => {
  const root = await mkdtemp(join(tmpdir(), "kiln-gc-store-"));
  try {
    const state = await stateAt(root);
    const s = state.snapshots;
    const chain: string[] = [];
    for (let i = 0; i < 12; i++) {
      const id = `exec-${String(i).padStart(16, "0")}-0000000${i}`;
      await layer(s, id, [...chain], 16);
      chain.push(id);
    }
    const side = "file-aaaaaaaaaaaaaaaa-00000000";
    await layer(s, side, chain.slice(0, 2), 8);
    // mounting the long chain makes a flat: snapshot of its lower part
    const view = await s.prepare("view", chain);
    await view.release();
    const flats = (await s.list()).filter((x) => x.info !== undefined && isFlatSnapshot(x.info.id));
    assert.ok(flats.length > 0, "the chain was flattened");

    const save = (key: string, ids: string[]) =>
      state.cache.save(key, { layers: ids.map((snapshot) => ({ snapshot })) } satisfies FsResult);
    await save("sha256:top", chain);
    await save("sha256:side", [...chain.slice(0, 2), side]);
    // an old record: `until` lets it go
    await save("sha256:old", [chain[0]!]);
    const long = new Date(Date.now() - 3 * 86_400_000);
    usedAt(root, "sha256:old", long);

    // leftovers of crashed builds, and a blob hard-linked inside the store (counted once)
    await writeFile(join(state.content.dirs.ingest, "123-abc"), Buffer.alloc(10_000, 1));
    await writeFile(join(state.tmpDir, "layer-xyz"), Buffer.alloc(20_000, 2));
    const blob = await state.content.putBytes(Buffer.alloc(50_000, 3));
    await utimes(state.content.path(blob.digest), long, long);
    await link(state.content.path(blob.digest), join(state.tmpDir, "linked"));
    await mkdir(join(state.cacheMountsDir, "0123"));
    await writeFile(join(state.cacheMountsDir, "0123", "dl"), Buffer.alloc(30_000, 4));

    await state.snapshots.removed();
    const report = await diskUsageReport(state);
    assert.equal(report.total, du(root));
    assert.equal(
      await diskUsage(root),
      Number(execFileSync("du", ["-sxB1", root], { encoding: "utf8" }).split("\t")[0]),
    );

    // until keeps the recent records (and all they use); leftovers, the old record and the
    // unreferenced blob go; the blob's second link in tmp/ goes too, so its bytes are freed
    const removed = await pruneChecked(state, { keepDurationMs: 86_400_000 });
    assert.deepEqual(removed, [
      "leftover:content/.ingest/123-abc",
      "leftover:tmp/layer-xyz",
      "leftover:tmp/linked",
      "result:old",
      blob.digest,
    ]);
    for (const f of flats) assert.ok(await s.exists(f.info!.id), "flats a kept chain uses stay");
    assert.deepEqual(await readdir(state.cacheMountsDir), ["0123"]);

    // two days on, with only the side branch's record used since: the long chain's upper
    // layers go, and with them every flat no kept chain can mount; the side's parents stay
    const later = new Date(Date.now() + 2 * 86_400_000);
    usedAt(root, "sha256:side", later);
    const kept = new Set([flatSnapshotId(chain.slice(0, 1)), flatSnapshotId(chain.slice(0, 2))]);
    const removed2 = await pruneChecked(state, { keepDurationMs: 86_400_000, now: later });
    assert.deepEqual(
      removed2,
      [
        "result:top",
        ...chain.slice(2),
        ...flats.map((f) => f.info!.id).filter((id) => !kept.has(id)),
      ].sort(),
    );
    for (const id of [...chain.slice(0, 2), side]) assert.ok(await s.exists(id), id);

    // --all: everything, cache mounts and build-context checksums included
    await mkdir(state.contextHashesDir, { recursive: true });
    await writeFile(join(state.contextHashesDir, "0123.json"), "{}");
    await pruneChecked(state, { all: true });
    assert.deepEqual(await readdir(state.cacheMountsDir), []);
    assert.equal(existsSync(state.contextHashesDir), false, "context checksums are gone");
    assert.deepEqual(
      (await s.list()).map((x) => x.info?.id),
      [],
    );
    assert.deepEqual(mountsUnder(await readMountInfo(), root), []);
  } finally {
    for (const m of mountsUnder(await readMountInfo(), root)) execFileSync("umount", ["-l", m]);
    await rm(root, { recursive: true, force: true });
  }
});
