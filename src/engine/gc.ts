/**
 * Disk management of the state dir: what `kiln du` reports and what `kiln prune` removes, and
 * the lock that keeps a prune from deleting what a running build uses.
 *
 * Model: every file under the root belongs to one record (a cache result, a layer-blob record,
 * a snapshot, a content blob, a cache mount), to a leftover of a crash, or to the store itself.
 * Records keep others alive (a result its layer snapshots and blobs, a snapshot its parents and
 * the flattened prefixes of its chain and its layer-blob records, a layer-blob record its blob).
 * A prune picks roots (named images; without --all also what they use and the cache mounts; what
 * `until`/`--keep-storage` keep), removes every record not reachable from them, and reports the
 * bytes freed: the disk blocks of every inode all of whose links were in removed records.
 *
 * Locking (leases in the state dir's metadata database, each row tagged with its process, so a
 * dead owner's row is swept and never blocks): a build inserts a build lease unless a prune
 * lease exists, in one transaction; a prune inserts its lease, then waits until no build lease
 * is left (and no earlier prune). As both check-and-insert in transactions, one always sees
 * the other: a build's lease covers everything it may read or create, and a prune never runs
 * beside one.
 */
import { lstat, readdir, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FsResult } from "../cache/index.js";
import { cleanupStaleContainers } from "../executor/index.js";
import { MetadataStore } from "../metadata/index.js";
import { isIndexType, isManifestType } from "../oci/mediatypes.js";
import {
  flatSnapshotId,
  isFlatSnapshot,
  snapshotKind,
  type SnapshotInfo,
  type SnapshotKind,
} from "../snapshot/index.js";
import type { KilnState } from "./state.js";

// ---------------------------------------------------------------------------------------------
// Locks

const LOCK_POLL_MS = 100;

function releaser(metadata: MetadataStore, lease: number): () => Promise<void> {
  return () => {
    metadata.releaseLease(lease);
    return Promise.resolve();
  };
}

/**
 * The shared lock of a build: waits while a prune runs. Returns the function that releases it.
 */
export async function acquireBuildLock(
  root: string,
  opts: { signal?: AbortSignal; onWait?: () => void } = {},
): Promise<() => Promise<void>> {
  const metadata = MetadataStore.open(root);
  let told = false;
  for (;;) {
    await metadata.sweepDeadOwners();
    const lease = await metadata.tryBuildLease();
    if (lease !== undefined) return releaser(metadata, lease);
    if (!told) opts.onWait?.();
    told = true;
    await sleep(LOCK_POLL_MS, undefined, { signal: opts.signal });
  }
}

/**
 * The exclusive lock of a prune: new builds wait from now on; resolves once no build that
 * started earlier is still running. `onWait` is told how many builds it waits for.
 */
export async function acquirePruneLock(
  root: string,
  onWait?: (builds: number) => void,
): Promise<() => Promise<void>> {
  const metadata = MetadataStore.open(root);
  const lease = await metadata.pruneLease();
  const release = releaser(metadata, lease);
  try {
    let told = 0;
    for (;;) {
      await metadata.sweepDeadOwners();
      const s = metadata.pruneMayStart(lease);
      if (s.start) return release;
      if (s.builds > 0 && s.builds !== told) onWait?.(s.builds);
      told = s.builds;
      await sleep(LOCK_POLL_MS);
    }
  } catch (e) {
    await release();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Disk usage

interface Inode {
  /** disk blocks in bytes (st_blocks × 512), as du counts them */
  bytes: number;
  /** the record each seen link belongs to */
  owners: string[];
}

interface Walk {
  inodes: Map<string, Inode>;
  /** newest mtime of each record's files (every owner met is a key) */
  mtime: Map<string, number>;
}

/** Owner of everything under a collection dir's entry `name`, or undefined to keep walking. */
type Classify = (dir: string, name: string) => string | undefined | typeof SKIP;

/** Not counted at all: the metadata database, whose size moves with its own journal. */
const SKIP = Symbol("skip");

/**
 * A du-like walk: every inode once, never into another file system (mounts of running or
 * crashed builds). Files that vanish meanwhile are skipped.
 */
async function walk(roots: string[], classify: Classify, owner = "store"): Promise<Walk> {
  const w: Walk = { inodes: new Map(), mtime: new Map() };
  const visit = async (path: string, owner: string, dev: number | undefined): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch {
      return;
    }
    if (dev !== undefined && st.dev !== dev) return;
    const key = `${st.dev}:${st.ino}`;
    const seen = w.inodes.get(key);
    if (seen) seen.owners.push(owner);
    else w.inodes.set(key, { bytes: st.blocks * 512, owners: [owner] });
    if (st.mtimeMs > (w.mtime.get(owner) ?? -1)) w.mtime.set(owner, st.mtimeMs);
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    await Promise.all(
      names.map((n) => {
        const o = classify(path, n);
        return o === SKIP ? Promise.resolve() : visit(join(path, n), o ?? owner, st.dev);
      }),
    );
  };
  for (const r of roots) await visit(r, owner, undefined);
  return w;
}

/**
 * Bytes the state dir shrinks by (as du measures it) when every link owned by `removed` goes.
 * A link outside the state dir (an OCI layout output hard-links the store's blobs) keeps the
 * data on disk, but it no longer counts here, as it no longer counts in `kiln du`.
 */
function freedBy(w: Walk, removed: ReadonlySet<string>): number {
  let bytes = 0;
  for (const i of w.inodes.values()) if (i.owners.every((o) => removed.has(o))) bytes += i.bytes;
  return bytes;
}

/** Total bytes of the walk (each inode once). */
function totalOf(w: Walk): number {
  let bytes = 0;
  for (const i of w.inodes.values()) bytes += i.bytes;
  return bytes;
}

/** du -sx of a set of paths (each inode once), in bytes. */
export async function diskUsage(...paths: string[]): Promise<number> {
  return totalOf(await walk(paths, () => undefined));
}

// ---------------------------------------------------------------------------------------------
// Records

export type RecordType =
  | "result"
  | "layer-blob"
  | "source"
  | "exec"
  | "file"
  | "flat"
  | "snapshot"
  | "blob"
  | "cache-mount"
  | "leftover";

/** One line of `kiln du`. */
export interface UsageRecord {
  id: string;
  type: RecordType;
  description: string;
  /** bytes on disk; a file linked from several records counts in the first one only */
  size: number;
  createdAt: Date | undefined;
  lastUsed: Date;
  /** used by an image named in the content store's index.json */
  shared: boolean;
  /** used by a named image, a cache result or another record that is kept */
  inUse: boolean;
  /** a plain `kiln prune` would remove it */
  reclaimable: boolean;
  parents: string[];
}

interface Node {
  rec: UsageRecord;
  /** records this one keeps alive */
  refs: string[];
  /** never a root (leftovers of crashes) */
  garbage: boolean;
  remove(): Promise<void>;
}

interface Inventory {
  nodes: Map<string, Node>;
  walk: Walk;
  /** blobs reachable from index.json */
  namedBlobs: Set<string>;
  /** records a named image uses (its blobs, layer snapshots and matching results) */
  shared: Set<string>;
  /** live builds hold locks: their temporary files are not leftovers */
  buildsRunning: boolean;
}

const SNAPSHOT_RECORD: Record<SnapshotKind, RecordType> = {
  pulled: "source",
  exec: "exec",
  file: "file",
  flat: "flat",
  other: "snapshot",
};

function snapshotType(id: string): RecordType {
  return SNAPSHOT_RECORD[snapshotKind(id)];
}

const SNAPSHOT_TYPES: ReadonlySet<RecordType> = new Set([
  "source",
  "exec",
  "file",
  "flat",
  "snapshot",
]);

const TYPE_TEXT: Record<RecordType, string> = {
  result: "cache result",
  "layer-blob": "compressed-layer record",
  source: "image layer (pulled)",
  exec: "RUN layer",
  file: "COPY/ADD/file layer",
  flat: "flattened layer chain",
  snapshot: "layer",
  blob: "content blob",
  "cache-mount": "RUN --mount=type=cache directory",
  leftover: "leftover of an interrupted build",
};

async function namedImageBlobs(state: KilnState): Promise<Set<string>> {
  const out = new Set<string>();
  let index;
  try {
    index = await state.content.readIndex();
  } catch {
    return out;
  }
  const queue = index.manifests.map((d) => ({ digest: d.digest, mediaType: d.mediaType }));
  while (queue.length > 0) {
    const d = queue.pop()!;
    if (out.has(d.digest)) continue;
    out.add(d.digest);
    if (!isIndexType(d.mediaType) && !isManifestType(d.mediaType)) continue;
    let doc: {
      manifests?: { digest: string; mediaType: string }[];
      config?: { digest: string; mediaType: string };
      layers?: { digest: string; mediaType: string }[];
    };
    try {
      doc = JSON.parse((await state.content.readBytes(d.digest)).toString("utf8")) as typeof doc;
    } catch {
      continue; // missing or corrupt: nothing below it can be found
    }
    for (const c of [...(doc.manifests ?? []), ...(doc.layers ?? [])]) queue.push(c);
    if (doc.config) queue.push(doc.config);
  }
  return out;
}

async function inventory(state: KilnState): Promise<Inventory> {
  await state.metadata.sweepDeadOwners();
  const snapshots = await state.snapshots.list();
  const snapshotOfEntry = new Map<string, string>();
  for (const s of snapshots) if (s.info) snapshotOfEntry.set(s.name, s.info.id);
  const content = state.content.dirs;
  const snaps = state.snapshots.dirs;
  const leftover = (dir: string, name: string) =>
    `leftover:${relative(state.root, join(dir, name))}`;
  const classify: Classify = (dir, name) => {
    switch (dir) {
      case state.root:
        return state.metadata.ownsFile(name) ? SKIP : undefined;
      case content.blobs:
        return /^[0-9a-f]{64}$/.test(name) ? `sha256:${name}` : leftover(dir, name);
      case snaps.snapshots:
        if (state.snapshots.isOwnEntry(name)) return undefined;
        return snapshotOfEntry.get(name) ?? leftover(dir, name);
      case snaps.active:
      case content.ingest:
      case state.tmpDir:
        return leftover(dir, name);
      case state.cacheMountsDir:
        return `cache-mount:${name}`;
      default:
        return undefined;
    }
  };
  const [w, named] = await Promise.all([walk([state.root], classify), namedImageBlobs(state)]);
  const results = state.cache.results();
  const blobRecords = state.cache.blobRecords();
  const buildsRunning = state.metadata.liveLeases("build") > 0;
  const nodes = new Map<string, Node>();
  const sizeOf = new Map<string, number>();
  for (const i of w.inodes.values()) {
    const o = i.owners[0]!;
    sizeOf.set(o, (sizeOf.get(o) ?? 0) + i.bytes);
  }
  const mtime = (owner: string) => new Date(w.mtime.get(owner) ?? 0);
  const add = (
    rec: Omit<UsageRecord, "size" | "shared" | "inUse" | "reclaimable" | "parents"> &
      Partial<Pick<UsageRecord, "parents">>,
    refs: string[],
    remove: () => Promise<void>,
    garbage = false,
  ) => {
    nodes.set(rec.id, {
      rec: {
        parents: [],
        ...rec,
        size: sizeOf.get(rec.id) ?? 0,
        shared: false,
        inUse: false,
        reclaimable: false,
      },
      refs,
      garbage,
      remove,
    });
  };

  // snapshots
  const infos = new Map<string, SnapshotInfo>();
  for (const s of snapshots) if (s.info) infos.set(s.info.id, s.info);
  const anyFlat = [...infos.keys()].some(isFlatSnapshot);
  // the flattened prefixes of a chain that exist (mounting the chain may reuse them)
  const flatsOf = (chain: readonly string[]): string[] => {
    if (!anyFlat) return [];
    const out: string[] = [];
    for (let n = 1; n < chain.length; n++) {
      const f = flatSnapshotId(chain.slice(0, n));
      if (infos.has(f)) out.push(f);
    }
    return out;
  };
  for (const s of snapshots) {
    if (!s.info) {
      const id = leftover(snaps.snapshots, s.name);
      add(
        {
          id,
          type: "leftover",
          description: "snapshot without metadata",
          createdAt: undefined,
          lastUsed: mtime(id),
        },
        [],
        () => rm(s.dir, { recursive: true, force: true }),
        true,
      );
      continue;
    }
    const { id, parents, created } = s.info;
    const refs = [...parents, ...flatsOf([...parents, id])];
    add(
      {
        id,
        type: snapshotType(id),
        description: TYPE_TEXT[snapshotType(id)],
        createdAt: new Date(created),
        lastUsed: new Date(created),
        parents,
      },
      refs,
      () => state.snapshots.remove(id),
    );
  }

  // layer-blob records: kept by their snapshot, keeping their blob
  for (const r of blobRecords) {
    const id = `layer-blob:${r.snapshot}.${r.compression}`;
    add(
      {
        id,
        type: "layer-blob",
        description: `${r.compression} blob of ${r.snapshot}${r.blob ? ` (${r.blob.digest})` : ""}`,
        createdAt: r.created,
        lastUsed: r.lastUsed,
      },
      r.blob ? [r.blob.digest] : [],
      () => {
        state.cache.removeBlobRecord(r.snapshot, r.compression);
        return Promise.resolve();
      },
    );
    nodes.get(r.snapshot)?.refs.push(id);
  }

  // cache results
  const digestToSnapshots = new Map<string, Set<string>>();
  const link = (digest: string, snapshot: string) => {
    let s = digestToSnapshots.get(digest);
    if (!s) digestToSnapshots.set(digest, (s = new Set()));
    s.add(snapshot);
  };
  for (const r of blobRecords) if (r.blob) link(r.blob.digest, r.snapshot);
  const resultLayers = new Map<string, FsResult["layers"]>();
  for (const r of results) {
    const name = r.key.replace(/^sha256:/, "");
    const id = `result:${name}`;
    const layers = r.result?.layers ?? [];
    for (const l of layers) if (l.blob) link(l.blob.digest, l.snapshot);
    resultLayers.set(id, layers);
    const top = layers.at(-1);
    add(
      {
        id,
        type: r.result ? "result" : "leftover",
        description: r.result
          ? `sha256:${name.slice(0, 12)}… → ${top ? top.snapshot : "empty filesystem"}`
          : "unreadable cache record",
        createdAt: r.created,
        lastUsed: r.lastUsed,
      },
      [
        ...layers.flatMap((l) => (l.blob ? [l.snapshot, l.blob.digest] : [l.snapshot])),
        // a merge's chain is no snapshot's parents: exporting it may reuse its flattening
        ...flatsOf(layers.map((l) => l.snapshot)),
      ],
      () => {
        state.cache.removeResult(r.key);
        return Promise.resolve();
      },
      r.result === undefined,
    );
  }

  // content blobs, cache mounts and leftovers: whatever else the walk found
  for (const owner of w.mtime.keys()) {
    if (nodes.has(owner) || owner === "store") continue;
    if (owner.startsWith("sha256:")) {
      add(
        {
          id: owner,
          type: "blob",
          description: named.has(owner) ? "content of a named image" : TYPE_TEXT.blob,
          createdAt: mtime(owner),
          lastUsed: mtime(owner),
        },
        [],
        () => state.content.delete(owner),
      );
    } else if (owner.startsWith("cache-mount:")) {
      const dir = join(state.cacheMountsDir, owner.slice("cache-mount:".length));
      add(
        {
          id: owner,
          type: "cache-mount",
          description: TYPE_TEXT["cache-mount"],
          createdAt: undefined,
          lastUsed: mtime(owner),
        },
        [],
        () => rm(dir, { recursive: true, force: true }),
      );
    } else if (owner.startsWith("leftover:")) {
      const path = join(state.root, owner.slice("leftover:".length));
      add(
        {
          id: owner,
          type: "leftover",
          description: buildsRunning ? "temporary file (a build is running)" : TYPE_TEXT.leftover,
          createdAt: undefined,
          lastUsed: mtime(owner),
        },
        [],
        () => rm(path, { recursive: true, force: true }),
        // while builds run, their temporary files are theirs
        !buildsRunning,
      );
    }
  }

  // last used: a snapshot or blob was used when a result that names it was
  for (const [id, layers] of resultLayers) {
    const t = nodes.get(id)!.rec.lastUsed;
    for (const l of layers) {
      for (const ref of [l.snapshot, l.blob?.digest]) {
        const n = ref === undefined ? undefined : nodes.get(ref);
        if (n && n.rec.lastUsed < t) n.rec.lastUsed = t;
      }
    }
  }
  for (const n of nodes.values()) {
    for (const p of n.rec.parents) {
      const pn = nodes.get(p);
      if (pn && pn.rec.lastUsed < n.rec.lastUsed) pn.rec.lastUsed = n.rec.lastUsed;
    }
  }

  // what named images use
  const shared = new Set<string>([...named].filter((d) => nodes.has(d)));
  const namedLayers = [...named].flatMap((d) => [...(digestToSnapshots.get(d) ?? [])]);
  for (const id of closure(nodes, namedLayers)) {
    if (SNAPSHOT_TYPES.has(nodes.get(id)!.rec.type)) shared.add(id);
  }
  for (const [id, layers] of resultLayers) {
    if (layers.length > 0 && layers.every((l) => shared.has(l.snapshot))) shared.add(id);
  }
  return { nodes, walk: w, namedBlobs: named, shared, buildsRunning };
}

function closure(nodes: Map<string, Node>, roots: Iterable<string>): Set<string> {
  const kept = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const id = queue.pop()!;
    if (kept.has(id)) continue;
    const n = nodes.get(id);
    if (!n) continue;
    kept.add(id);
    queue.push(...n.refs);
  }
  return kept;
}

// ---------------------------------------------------------------------------------------------
// Prune plans

export interface PruneOptions {
  /** also what named images use (their own blobs always stay) and cache mounts */
  all?: boolean;
  /** keep records used within this many milliseconds */
  keepDurationMs?: number;
  /** keep the most recently used records while the state dir stays within this many bytes */
  keepBytes?: number;
  /** now, for `until` (tests) */
  now?: Date;
}

interface Plan {
  removed: Node[];
  freed: number;
}

function plan(inv: Inventory, opts: PruneOptions): Plan {
  const now = (opts.now ?? new Date()).getTime();
  const roots = new Set<string>(inv.namedBlobs);
  for (const n of inv.nodes.values()) {
    if (n.garbage) continue;
    if (n.rec.type === "leftover") roots.add(n.rec.id); // a running build's temp files
    if (!opts.all && (inv.shared.has(n.rec.id) || n.rec.type === "cache-mount")) {
      roots.add(n.rec.id);
    }
    if (opts.keepDurationMs !== undefined && now - n.rec.lastUsed.getTime() < opts.keepDurationMs) {
      roots.add(n.rec.id);
    }
  }
  const removedSet = (kept: Set<string>) =>
    new Set([...inv.nodes.keys()].filter((id) => !kept.has(id)));
  let kept = closure(inv.nodes, roots);
  if (opts.keepBytes !== undefined) {
    const total = totalOf(inv.walk);
    const candidates = [...inv.nodes.values()]
      .filter((n) => !n.garbage && !kept.has(n.rec.id))
      .sort((a, b) => b.rec.lastUsed.getTime() - a.rec.lastUsed.getTime())
      .map((n) => n.rec.id);
    // the longest most-recently-used prefix that still fits (usage only grows with it)
    const keptWith = (k: number) => closure(inv.nodes, [...roots, ...candidates.slice(0, k)]);
    const fits = (k: number) =>
      total - freedBy(inv.walk, removedSet(keptWith(k))) <= opts.keepBytes!;
    let lo = 0;
    let hi = candidates.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (fits(mid)) lo = mid;
      else hi = mid - 1;
    }
    kept = keptWith(lo);
  }
  const removed = removedSet(kept);
  return {
    removed: [...removed].map((id) => inv.nodes.get(id)!),
    freed: freedBy(inv.walk, removed),
  };
}

// ---------------------------------------------------------------------------------------------
// The commands' engine

export interface UsageReport {
  records: UsageRecord[];
  /** bytes of the whole state dir */
  total: number;
  /** bytes a plain `kiln prune` would free */
  reclaimable: number;
  /** bytes `kiln prune --all` would free */
  reclaimableAll: number;
  /** bytes of records named images use */
  shared: number;
}

/** What the state dir holds (read-only; safe while builds run). */
export async function diskUsageReport(state: KilnState): Promise<UsageReport> {
  const inv = await inventory(state);
  const p = plan(inv, {});
  const pAll = plan(inv, { all: true });
  const reclaimable = new Set(p.removed.map((n) => n.rec.id));
  const referenced = new Set<string>();
  for (const n of inv.nodes.values()) if (!n.garbage) for (const r of n.refs) referenced.add(r);
  const records = [...inv.nodes.values()].map((n) => ({
    ...n.rec,
    shared: inv.shared.has(n.rec.id),
    inUse: inv.shared.has(n.rec.id) || referenced.has(n.rec.id),
    reclaimable: reclaimable.has(n.rec.id),
  }));
  records.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime() || a.id.localeCompare(b.id));
  let shared = 0;
  for (const r of records) if (r.shared) shared += r.size;
  return {
    records,
    total: totalOf(inv.walk),
    reclaimable: p.freed,
    reclaimableAll: pAll.freed,
    shared,
  };
}

export interface PruneResult {
  removed: UsageRecord[];
  /** bytes freed on disk (blocks of every inode whose last link went) */
  freed: number;
}

/**
 * Remove what the options say (see PruneOptions) under the exclusive lock, after the stale
 * state of crashed builds. Removal order keeps the store consistent if interrupted: results
 * first (nothing points at a layer that is gone), snapshots, then blobs.
 */
export async function prune(
  state: KilnState,
  opts: PruneOptions & { onWait?: (builds: number) => void } = {},
): Promise<PruneResult> {
  const release = await acquirePruneLock(state.root, opts.onWait);
  try {
    const executorDirs = ["runc", "bundles"].map((d) => join(state.root, d));
    const before = await diskUsage(state.snapshots.dirs.active, ...executorDirs);
    await state.snapshots.cleanupStale();
    await cleanupStaleContainers({ stateDir: state.root });
    const staleFreed = before - (await diskUsage(state.snapshots.dirs.active, ...executorDirs));

    const inv = await inventory(state);
    const p = plan(inv, opts);
    const order: RecordType[] = [
      "result",
      "layer-blob",
      "exec",
      "file",
      "snapshot",
      "source",
      "flat",
      "blob",
      "cache-mount",
      "leftover",
    ];
    const removed = [...p.removed].sort(
      (a, b) => order.indexOf(a.rec.type) - order.indexOf(b.rec.type),
    );
    for (const n of removed) await n.remove();
    let checksumsFreed = 0;
    if (opts.all) {
      // what pushes left in registries is remembered state too: an emptied cache asks again
      state.metadata.forgetAllPushedBlobs();
      // and, when everything goes, build-context checksums are read afresh (BuildKit's go
      // with its local sources)
      if (opts.keepBytes === undefined && opts.keepDurationMs === undefined) {
        checksumsFreed = await diskUsage(state.contextHashesDir);
        await rm(state.contextHashesDir, { recursive: true, force: true });
      }
    }
    return { removed: removed.map((n) => n.rec), freed: p.freed + staleFreed + checksumsFreed };
  } finally {
    await release();
  }
}
