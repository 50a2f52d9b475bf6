/**
 * The metadata schema and the state dir's layout version (SQLite's user_version):
 *
 *   0  (no metadata.db) records as files: content/index.json, cache/results/<key>.json,
 *      cache/layer-blobs/<snapshot>.<compression>.json, lock-{build,prune}-<owner>-<rand>
 *   1  metadata.db holds them; index.json is a mirror written from it for OCI tools
 *   2  adds pushed_blobs: the blobs pushes left in registry repositories
 *
 * Opening a version-0 dir imports its records once (in the transaction that creates the
 * schema, so exactly one process does it) and removes the old files. A dir of a newer
 * version than this kiln knows is refused: an older kiln must not half-understand it.
 */
import type Database from "better-sqlite3";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { refNameAnnotation } from "../content/index.js";
import { KilnError } from "../errors.js";

export const LAYOUT_VERSION = 2;

const SCHEMA = `
CREATE TABLE image_refs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE,
  digest TEXT NOT NULL,
  descriptor TEXT NOT NULL
);
CREATE TABLE cache_results (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL
);
CREATE TABLE layer_blobs (
  snapshot TEXT NOT NULL,
  compression TEXT NOT NULL,
  value TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL,
  PRIMARY KEY (snapshot, compression)
);
CREATE TABLE leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('build', 'prune')),
  owner TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE cache_mount_holders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dir TEXT NOT NULL,
  sharing TEXT NOT NULL CHECK (sharing IN ('shared', 'private', 'locked')),
  user TEXT NOT NULL,
  owner TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE INDEX cache_mount_holders_dir ON cache_mount_holders (dir);
`;

/** Version 2's addition (what a version-1 dir lacks). */
const PUSHED_BLOBS = `
CREATE TABLE pushed_blobs (
  registry TEXT NOT NULL,
  repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  pushed INTEGER NOT NULL,
  PRIMARY KEY (registry, repository, digest)
);
`;

export function migrate(db: Database.Database, root: string): void {
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version === LAYOUT_VERSION) return;
    if (version > LAYOUT_VERSION) {
      throw new KilnError(
        "E_STATE_VERSION",
        `the state dir ${root} has layout version ${version}; this kiln knows up to ${LAYOUT_VERSION}`,
        { hint: "use the newer kiln that wrote it, or another state dir (KILN_ROOT)" },
      );
    }
    if (version === 0) {
      db.exec(SCHEMA);
      importVersion0(db, root);
    }
    db.exec(PUSHED_BLOBS);
    db.pragma(`user_version = ${LAYOUT_VERSION}`);
  }).immediate();
}

/** Version 0's records, imported; unreadable ones are dropped (they were misses before too). */
function importVersion0(db: Database.Database, root: string): void {
  const now = Date.now();
  const json = (path: string): unknown => {
    try {
      return JSON.parse(readFileSync(path, "utf8")) as unknown;
    } catch {
      return undefined;
    }
  };
  const index = json(join(root, "content", "index.json")) as
    { manifests?: { digest?: unknown; annotations?: Record<string, string> }[] } | undefined;
  const putRef = db.prepare(
    "INSERT OR REPLACE INTO image_refs (name, digest, descriptor) VALUES (?, ?, ?)",
  );
  for (const m of index?.manifests ?? []) {
    if (typeof m.digest !== "string") continue;
    const name = m.annotations?.[refNameAnnotation];
    putRef.run(name ?? null, m.digest, JSON.stringify(m));
  }

  const putResult = db.prepare(
    "INSERT OR REPLACE INTO cache_results (key, value, created, last_used) VALUES (?, ?, ?, ?)",
  );
  const results = join(root, "cache", "results");
  for (const f of list(results)) {
    const value = f.endsWith(".json") ? json(join(results, f)) : undefined;
    if (value !== undefined)
      putResult.run(`sha256:${f.slice(0, -5)}`, JSON.stringify(value), now, now);
  }
  const putBlob = db.prepare(
    `INSERT OR REPLACE INTO layer_blobs (snapshot, compression, value, created, last_used)
     VALUES (?, ?, ?, ?, ?)`,
  );
  const blobs = join(root, "cache", "layer-blobs");
  for (const f of list(blobs)) {
    const m = /^(.+)\.([^.]+)\.json$/.exec(f);
    const value = m ? json(join(blobs, f)) : undefined;
    if (value !== undefined) putBlob.run(m![1], m![2], JSON.stringify(value), now, now);
  }
  // the version-0 files are now the database's rows (locks: a v0 kiln must not run beside v1)
  for (const dir of [results, blobs]) rmSync(dir, { recursive: true, force: true });
  for (const f of list(root)) {
    if (/^lock-(build|prune)-/.test(f)) rmSync(join(root, f), { force: true });
  }
}

function list(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}
