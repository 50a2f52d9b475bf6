/**
 * The state dir's metadata: every fact that more than one kiln process may change at once
 * lives in one SQLite database (`<root>/metadata.db`, WAL mode), changed only in short
 * IMMEDIATE transactions, so processes serialise on SQLite's file lock and never lose each
 * other's updates. Blobs and snapshot trees stay plain files; this holds what names them and
 * who uses them:
 *
 *   image_refs           the store's image index (tags); index.json is written from it
 *   cache_results        solver results by cache key (JSON layer stacks), with last-used times
 *   layer_blobs          the compressed blob made from a snapshot per compression
 *   leases               running builds and prunes (a prune waits for builds and vice versa)
 *   cache_mount_holders  who holds which `RUN --mount=type=cache` directory, and how
 *   pushed_blobs         blobs known to be in registry repositories (pushed or pulled there)
 *
 * Rows that belong to a process (leases, holders) carry its owner tag; a row whose owner is
 * dead (SIGKILL, crash) is deleted by the next sweep, so nobody waits on a dead process.
 * Transactions are synchronous (better-sqlite3): never await inside one.
 */
import Database from "better-sqlite3";
import { statSync } from "node:fs";
import { join } from "node:path";
import { KilnError, messageOf } from "../errors.js";
import { isOwnerAlive, ownerTag } from "../process/index.js";
import { migrate } from "./migrate.js";

type DB = Database.Database;

/** A cache-key → result row, as `kiln du`/`prune` see it. */
export interface ResultRow {
  key: string;
  /** the cache's JSON text of the result */
  value: string;
  created: number;
  lastUsed: number;
}

/** A snapshot+compression → blob row. */
export interface LayerBlobRow {
  snapshot: string;
  compression: string;
  /** the cache's JSON text of the blob descriptor */
  value: string;
  created: number;
  lastUsed: number;
}

export type LeaseKind = "build" | "prune";

export type CacheSharing = "shared" | "private" | "locked";

/** One holder of a cache-mount directory. */
export interface CacheMountHolder {
  dir: string;
  sharing: CacheSharing;
  /** who uses it (a platform), for the concurrent-use warning */
  user: string;
  owner: string;
}

/** Waits long enough for any other process's transaction (they are milliseconds). */
const BUSY_TIMEOUT_MS = 30_000;

const DB_FILE = "metadata.db";

/**
 * How long a record of a pushed blob is believed: a registry may garbage-collect a blob no
 * manifest holds (a push that failed half-way), and a rebuild a day later asks once more.
 */
const PUSHED_BLOB_TRUST_MS = 24 * 3600_000;

const stores = new Map<string, MetadataStore>();

export class MetadataStore {
  readonly path: string;
  readonly #db: DB;
  readonly #ino: number;

  private constructor(path: string, db: DB, ino: number) {
    this.path = path;
    this.#db = db;
    this.#ino = ino;
  }

  /**
   * The metadata of the state dir at root (one connection per root and process), creating
   * and migrating it on first use.
   */
  static open(root: string): MetadataStore {
    const path = join(root, DB_FILE);
    const known = stores.get(path);
    // the same file still (a state dir removed and made anew needs a new connection)
    if (known && statSync(path, { throwIfNoEntry: false })?.ino === known.#ino) return known;
    let db: DB;
    try {
      db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
      db.pragma("journal_mode = WAL");
      // NORMAL: in WAL mode a crash of kiln loses nothing committed and a power cut only the
      // last commits, never consistency (as before: records were renamed into place unsynced);
      // FULL would fsync every cache hit (~8 ms each here)
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
    } catch (e) {
      throw new KilnError("E_STATE_METADATA", `cannot open ${path}: ${messageOf(e)}`, {
        hint: /better_sqlite3\.node|bindings/.test(messageOf(e))
          ? "the SQLite module is not built: run scripts/setup (npm ci compiles better-sqlite3)"
          : "check permissions and free space of the state dir (KILN_ROOT)",
        cause: e,
      });
    }
    migrate(db, root);
    if (known) known.#db.close();
    const store = new MetadataStore(path, db, statSync(path).ino);
    stores.set(path, store);
    return store;
  }

  /** Whether a file in the state dir is this database's (the database, its WAL or shm). */
  ownsFile(name: string): boolean {
    return name === DB_FILE || name === `${DB_FILE}-wal` || name === `${DB_FILE}-shm`;
  }

  /** Runs fn in one IMMEDIATE transaction (it takes the write lock first, so no upgrade fails). */
  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  // -------------------------------------------------------------------------------------------
  // Pushed blobs (registry.PushedBlobs)

  hasPushedBlob(registry: string, repository: string, digest: string): boolean {
    const row = this.#db
      .prepare<[string, string, string, number], { pushed: number }>(
        `SELECT pushed FROM pushed_blobs
         WHERE registry = ? AND repository = ? AND digest = ? AND pushed > ?`,
      )
      .get(registry, repository, digest, Date.now() - PUSHED_BLOB_TRUST_MS);
    return row !== undefined;
  }

  addPushedBlob(registry: string, repository: string, digest: string): void {
    this.#db
      .prepare(
        `INSERT INTO pushed_blobs (registry, repository, digest, pushed) VALUES (?, ?, ?, ?)
         ON CONFLICT (registry, repository, digest) DO UPDATE SET pushed = excluded.pushed`,
      )
      .run(registry, repository, digest, Date.now());
  }

  repositoriesWith(registry: string, digest: string, limit: number): string[] {
    return this.#db
      .prepare<[string, string, number], { repository: string }>(
        `SELECT repository FROM pushed_blobs WHERE registry = ? AND digest = ?
         ORDER BY pushed DESC LIMIT ?`,
      )
      .all(registry, digest, limit)
      .map((r) => r.repository);
  }

  forgetPushedBlobs(registry: string, repository: string): void {
    this.#db
      .prepare("DELETE FROM pushed_blobs WHERE registry = ? AND repository = ?")
      .run(registry, repository);
  }

  /** Forget every pushed blob (`kiln prune --all`: the next push asks the registry again). */
  forgetAllPushedBlobs(): void {
    this.#db.prepare("DELETE FROM pushed_blobs").run();
  }

  // -------------------------------------------------------------------------------------------
  // Image index

  /** The index's entries in the order they were recorded (descriptors as JSON objects). */
  imageRefs(): unknown[] {
    return this.#db
      .prepare<[], { descriptor: string }>("SELECT descriptor FROM image_refs ORDER BY seq")
      .all()
      .map((r) => JSON.parse(r.descriptor) as unknown);
  }

  /**
   * Records an index entry: a named one replaces the entry of that name, an unnamed one the
   * unnamed entry of the same digest. `mirror` is called with the new list inside the
   * transaction (to write index.json while no other process can change the list).
   */
  putImageRef(
    entry: { digest: string },
    name: string | undefined,
    mirror: (entries: unknown[]) => void,
  ): void {
    this.#tx(() => {
      if (name === undefined) {
        this.#db
          .prepare("DELETE FROM image_refs WHERE name IS NULL AND digest = ?")
          .run(entry.digest);
      } else {
        this.#db.prepare("DELETE FROM image_refs WHERE name = ?").run(name);
      }
      this.#db
        .prepare("INSERT INTO image_refs (name, digest, descriptor) VALUES (?, ?, ?)")
        .run(name ?? null, entry.digest, JSON.stringify(entry));
      mirror(this.imageRefs());
    });
  }

  // -------------------------------------------------------------------------------------------
  // Build cache records

  /** The result recorded for key, marking it used now. */
  useResult(key: string): string | undefined {
    return this.#tx(() => {
      const row = this.#resultRow(key);
      if (row) {
        this.#db
          .prepare("UPDATE cache_results SET last_used = ? WHERE key = ?")
          .run(Date.now(), key);
      }
      return row?.value;
    });
  }

  /** The result recorded for key, as it is (a lookup, not a use: its last-used time stays). */
  peekResult(key: string): string | undefined {
    return this.#resultRow(key)?.value;
  }

  #resultRow(key: string): { value: string } | undefined {
    return this.#db
      .prepare<[string], { value: string }>("SELECT value FROM cache_results WHERE key = ?")
      .get(key);
  }

  putResult(key: string, value: string): void {
    const now = Date.now();
    this.#db
      .prepare(
        `INSERT INTO cache_results (key, value, created, last_used) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, last_used = excluded.last_used`,
      )
      .run(key, value, now, now);
  }

  results(): ResultRow[] {
    return this.#db
      .prepare<[], ResultRow>(
        "SELECT key, value, created, last_used AS lastUsed FROM cache_results ORDER BY key",
      )
      .all();
  }

  deleteResult(key: string): void {
    this.#db.prepare("DELETE FROM cache_results WHERE key = ?").run(key);
  }

  /** The blob recorded for a snapshot and compression, marking it used now. */
  useLayerBlob(snapshot: string, compression: string): string | undefined {
    return this.#tx(() => {
      const row = this.#db
        .prepare<[string, string], { value: string }>(
          "SELECT value FROM layer_blobs WHERE snapshot = ? AND compression = ?",
        )
        .get(snapshot, compression);
      if (row) {
        this.#db
          .prepare("UPDATE layer_blobs SET last_used = ? WHERE snapshot = ? AND compression = ?")
          .run(Date.now(), snapshot, compression);
      }
      return row?.value;
    });
  }

  putLayerBlob(snapshot: string, compression: string, value: string): void {
    const now = Date.now();
    this.#db
      .prepare(
        `INSERT INTO layer_blobs (snapshot, compression, value, created, last_used)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (snapshot, compression)
         DO UPDATE SET value = excluded.value, last_used = excluded.last_used`,
      )
      .run(snapshot, compression, value, now, now);
  }

  layerBlobs(): LayerBlobRow[] {
    return this.#db
      .prepare<[], LayerBlobRow>(
        `SELECT snapshot, compression, value, created, last_used AS lastUsed
         FROM layer_blobs ORDER BY snapshot, compression`,
      )
      .all();
  }

  deleteLayerBlob(snapshot: string, compression: string): void {
    this.#db
      .prepare("DELETE FROM layer_blobs WHERE snapshot = ? AND compression = ?")
      .run(snapshot, compression);
  }

  // -------------------------------------------------------------------------------------------
  // Owners: liveness of the processes rows belong to

  /** Deletes the leases and cache-mount holds of processes that are gone. */
  async sweepDeadOwners(): Promise<void> {
    const own = await ownerTag();
    const owners = this.#db
      .prepare<[], { owner: string }>(
        "SELECT owner FROM leases UNION SELECT owner FROM cache_mount_holders",
      )
      .all()
      .map((r) => r.owner);
    const dead: string[] = [];
    for (const o of owners) if (o !== own && !(await isOwnerAlive(o))) dead.push(o);
    if (dead.length === 0) return;
    // a dead process never comes back, so deleting after the (async) check is safe
    this.#tx(() => {
      for (const o of dead) {
        this.#db.prepare("DELETE FROM leases WHERE owner = ?").run(o);
        this.#db.prepare("DELETE FROM cache_mount_holders WHERE owner = ?").run(o);
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Leases: builds and prunes exclude each other

  /**
   * A build's lease, unless a prune holds or waits for the store (then undefined: sweep and
   * try again later). Checking and inserting in one transaction means a prune that inserts
   * its own lease either sees this one or is seen by it.
   */
  async tryBuildLease(): Promise<number | undefined> {
    const owner = await ownerTag();
    return this.#tx(() => {
      const prunes = this.#db
        .prepare<[], { n: number }>("SELECT count(*) AS n FROM leases WHERE kind = 'prune'")
        .get()!.n;
      if (prunes > 0) return undefined;
      return this.#insertLease("build", owner);
    });
  }

  /** A prune's lease: from now on new builds wait (see pruneMayStart). */
  async pruneLease(): Promise<number> {
    const owner = await ownerTag();
    return this.#tx(() => this.#insertLease("prune", owner));
  }

  /**
   * Whether the prune holding lease `id` may start: no earlier prune is left and no build
   * lease exists (else how many builds it waits for, and 0 while an earlier prune runs).
   */
  pruneMayStart(id: number): { start: true } | { start: false; builds: number } {
    return this.#tx(() => {
      const earlier = this.#db
        .prepare<[number], { n: number }>(
          "SELECT count(*) AS n FROM leases WHERE kind = 'prune' AND id < ?",
        )
        .get(id)!.n;
      if (earlier > 0) return { start: false, builds: 0 };
      const builds = this.liveLeases("build");
      return builds === 0 ? { start: true } : { start: false, builds };
    });
  }

  /** Leases of a kind (after a sweep, each one a live process's). */
  liveLeases(kind: LeaseKind): number {
    return this.#db
      .prepare<[LeaseKind], { n: number }>("SELECT count(*) AS n FROM leases WHERE kind = ?")
      .get(kind)!.n;
  }

  releaseLease(id: number): void {
    this.#db.prepare("DELETE FROM leases WHERE id = ?").run(id);
  }

  #insertLease(kind: LeaseKind, owner: string): number {
    return Number(
      this.#db
        .prepare("INSERT INTO leases (kind, owner, created) VALUES (?, ?, ?)")
        .run(kind, owner, Date.now()).lastInsertRowid,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Cache-mount holders

  /**
   * Holds a cache-mount directory if `choose` (given every current holder of the candidate
   * directories) picks one; all in one transaction, so two processes never both get a
   * directory that excludes the other. Returns the chosen dir and the hold's id.
   */
  async tryHoldCacheMount(
    choose: (holdersOf: (dir: string) => CacheMountHolder[]) => string | undefined,
    hold: Omit<CacheMountHolder, "dir" | "owner">,
  ): Promise<{ dir: string; id: number; others: CacheMountHolder[] } | undefined> {
    const owner = await ownerTag();
    return this.#tx(() => {
      const holdersOf = (dir: string) =>
        this.#db
          .prepare<[string], CacheMountHolder>(
            "SELECT dir, sharing, user, owner FROM cache_mount_holders WHERE dir = ? ORDER BY id",
          )
          .all(dir);
      const dir = choose(holdersOf);
      if (dir === undefined) return undefined;
      const others = holdersOf(dir);
      const id = Number(
        this.#db
          .prepare(
            "INSERT INTO cache_mount_holders (dir, sharing, user, owner, created) VALUES (?, ?, ?, ?, ?)",
          )
          .run(dir, hold.sharing, hold.user, owner, Date.now()).lastInsertRowid,
      );
      return { dir, id, others };
    });
  }

  releaseCacheMount(id: number): void {
    this.#db.prepare("DELETE FROM cache_mount_holders WHERE id = ?").run(id);
  }
}
