import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { applyLayer, diffOf, type LayerDiff, type WalkOptions } from "../archive/index.js";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { flatSnapshotId } from "./ids.js";
import {
  isOwnerAlive,
  onCleanup,
  ownerTag,
  runBriefChecked,
  runChecked,
  prepareMountHelper,
} from "../process/index.js";
import { mountsUnder, readMountInfo } from "./mountinfo.js";
import {
  MAX_OPTIONS_LENGTH,
  mountOverlay,
  overlayFits,
  unmount,
  type OverlayDirs,
} from "./overlay.js";

/**
 * On-disk layout under root (everything on one filesystem so publishing is a rename):
 *
 *   driver                         the driver this root was created with
 *   snapshots/<key>/fs             a committed snapshot's files (immutable)
 *   snapshots/<key>/meta.json      { id, parents, driver, created, owner }
 *   snapshots/<key>/synced         present once the snapshot's files are on disk
 *   snapshots/.empty               the lower dir of a mount without parents
 *   active/<pid>-<start>-<rand>/   one workspace per prepare/newEmpty/flatten, owned by a process
 *
 * <key> is a short hash of the id so ~250 lowerdirs fit in the one page mount(2) accepts when
 * they are given relative to snapshots/; meta.json's id guards against collisions. A snapshot
 * becomes visible only by renaming a completed workspace dir into snapshots/.
 *
 * Durability is off the build's path: a snapshot is published at once and a background syncfs
 * (coalescing every snapshot published meanwhile) then marks it `synced`. One without the mark
 * whose publishing process is gone was cut off by a crash, and its files may be incomplete: it
 * counts as absent (and is replaced when the step runs again). Cache records may name a
 * snapshot before it is synced; they are only used while it counts as present.
 *
 * Drivers: "overlay" — a committed snapshot is a diff (the overlay upperdir, with overlay-style
 * whiteouts: 0/0 character devices and trusted.overlay.opaque=y dirs), mounted over its parent
 * chain. "copy" — for hosts without overlayfs: a committed snapshot is the FULL tree of its
 * parent chain plus its changes. A chain's tree is its top snapshot's when that one was made on
 * exactly the rest of the chain; otherwise (a merge) it is built once as a "flat:" snapshot by
 * applying the missing layers' diffs. prepare copies that tree (cp -a --reflink=auto), and a
 * snapshot's layer (`diff`) is the comparison of its tree with its parents' tree.
 */

export type SnapshotDriver = "overlay" | "copy";

function sameChain(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

/** The driver forced by KILN_SNAPSHOT_DRIVER (overlay or copy), if any. */
export function driverFromEnv(env: NodeJS.ProcessEnv = process.env): SnapshotDriver | undefined {
  const v = env.KILN_SNAPSHOT_DRIVER;
  if (v === undefined || v === "") return undefined;
  if (v === "overlay" || v === "copy") return v;
  throw new KilnError("E_SNAPSHOT_DRIVER", `KILN_SNAPSHOT_DRIVER=${v} is not a snapshot driver`, {
    hint: "Use overlay or copy, or unset it to use overlay when it works and copy otherwise.",
  });
}

export interface SnapshotterOptions {
  /** Force a driver; by default overlay is used if a probe mount works, else copy. */
  driver?: SnapshotDriver;
  /**
   * Longest overlay option string to pass to mount(2); longer parent chains are flattened.
   * Default: MAX_OPTIONS_LENGTH (one 4 KiB page minus a margin).
   */
  optionsLimit?: number;
}

export interface SnapshotInfo {
  id: string;
  /** The chain this snapshot was made on top of, bottom first. */
  parents: string[];
  driver: SnapshotDriver;
  created: string;
  /** The process that published it (ownerTag); absent in snapshots synced before publishing. */
  owner?: string;
}

interface Active {
  /** The id given to prepare/newEmpty. */
  id: string;
  driver: SnapshotDriver;
  /**
   * overlay: the changes only (what commit turns into the snapshot).
   * copy: the full tree (same dir as rootfs / dir).
   */
  upperdir: string;
  /** Unmount and discard (no-op after commit). */
  release(): Promise<void>;
}

/** A writable root filesystem over a parent chain. */
export interface ActiveMount extends Active {
  /** The mounted (overlay) or copied (copy) root filesystem. */
  rootfs: string;
  /** copy driver only: the parents' full tree that rootfs started as (a committed snapshot). */
  base: string | undefined;
}

/** A directory to unpack a layer into. */
export interface ActiveLayer extends Active {
  dir: string;
  /**
   * "overlay": dir starts empty; write deletions as overlay whiteouts (0/0 char device, opaque
   * xattr). "apply": dir starts as a copy of the parent tree; apply deletions by deleting.
   */
  whiteouts: "overlay" | "apply";
}

interface Workspace {
  dir: string;
  /** Mount point to unmount on release, if mounted. */
  mounted: string | undefined;
  done: boolean;
  unregister: () => void;
}

interface Claim {
  parents: readonly string[];
  uses: readonly string[];
  ws: Workspace | undefined;
}

const EMPTY = ".empty";
const SYNCED = "synced";

function keyOf(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 12);
}

function isErrno(e: unknown, ...codes: string[]): boolean {
  return (
    typeof e === "object" && e !== null && codes.includes((e as NodeJS.ErrnoException).code ?? "")
  );
}

export class Snapshotter {
  readonly root: string;
  readonly #requested: SnapshotDriver | undefined;
  readonly #optionsLimit: number;
  /** Ids whose metadata was read and matched, so long chains are not re-read on every mount. */
  readonly #known = new Set<string>();
  #ready: Promise<SnapshotDriver> | undefined;
  #ownerTag = "";
  /** Active id → its parents, the committed ids its mount reads from, and its workspace. */
  readonly #inUse = new Map<string, Claim>();
  /** Ids this process published that wait for the next syncfs. */
  readonly #unsynced = new Set<string>();
  #syncing: Promise<void> | undefined;
  #syncError: unknown;
  /** released workspaces being removed (see #discard) */
  readonly #removing = new Set<Promise<void>>();

  constructor(root: string, opts: SnapshotterOptions = {}) {
    this.root = resolve(root);
    this.#requested = opts.driver;
    this.#optionsLimit = opts.optionsLimit ?? MAX_OPTIONS_LENGTH;
  }

  get #snapshots(): string {
    return join(this.root, "snapshots");
  }

  get #activeRoot(): string {
    return join(this.root, "active");
  }

  /** The driver in use (creating the root and probing overlayfs on first call). */
  driver(): Promise<SnapshotDriver> {
    this.#ready ??= this.#init();
    return this.#ready;
  }

  async #init(): Promise<SnapshotDriver> {
    await mkdir(join(this.#snapshots, EMPTY), { recursive: true });
    await mkdir(this.#activeRoot, { recursive: true });
    this.#ownerTag = await ownerTag();
    const driverFile = join(this.root, "driver");
    let stored: SnapshotDriver | undefined;
    try {
      const text = (await readFile(driverFile, "utf8")).trim();
      if (text === "overlay" || text === "copy") stored = text;
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
    }
    if (stored && this.#requested && stored !== this.#requested) {
      throw new KilnError(
        "E_SNAPSHOT_DRIVER",
        `snapshot root ${this.root} was created with the ${stored} driver, not ${this.#requested}`,
        {
          hint: "Use another state directory for a different snapshot driver, or drop the option.",
        },
      );
    }
    if (stored) return stored;
    let driver: SnapshotDriver = this.#requested ?? "overlay";
    if (driver === "overlay") {
      const probeError = await this.#probeOverlay();
      if (probeError) {
        if (this.#requested === "overlay") {
          throw new KilnError("E_SNAPSHOT_DRIVER", `overlayfs is not usable under ${this.root}`, {
            hint: "Run as root on a kernel with overlayfs and a state dir that is not itself on overlayfs, or use the copy driver.",
            cause: probeError,
          });
        }
        driver = "copy";
      }
    }
    await writeFile(driverFile, `${driver}\n`);
    return driver;
  }

  /** Mount a tiny overlay and check that a write lands in the upperdir; returns why not. */
  async #probeOverlay(): Promise<unknown> {
    const ws = this.#workspace("probe");
    try {
      for (const d of ["lower", "upper", "work", "merged"]) await mkdir(join(ws.dir, d));
      await mountOverlay(
        { lowers: ["lower"], upper: "upper", work: "work" },
        join(ws.dir, "merged"),
        ws.dir,
      );
      ws.mounted = join(ws.dir, "merged");
      await writeFile(join(ws.dir, "merged", "probe"), "");
      await stat(join(ws.dir, "upper", "probe"));
      return undefined;
    } catch (e) {
      // the mount helper itself missing says nothing of overlayfs: the copy driver would be
      // kept for this state dir for good
      if (isKilnError(e) && (e.code === "E_PROCESS_SPAWN" || e.code === "E_PROCESS_FAILED"))
        throw e;
      return e;
    } finally {
      await this.#discard(ws);
    }
  }

  #workspace(name: string): Workspace {
    const dir = join(this.#activeRoot, `${this.#ownerTag}-${randomBytes(4).toString("hex")}`);
    mkdirSync(dir);
    const ws: Workspace = { dir, mounted: undefined, done: false, unregister: () => undefined };
    ws.unregister = onCleanup(`snapshot workspace ${name}`, async () => {
      if (ws.mounted) await unmount(ws.mounted);
    });
    return ws;
  }

  /**
   * Unmounts a workspace and removes its directory: `later`, in the background. Removing a
   * released active mount's workspace took 10–100 ms of thread-pool turns here, which the step
   * that released it need not wait for; one a process leaves behind when it ends first is
   * removed by cleanupStale (its owner is gone). A removed snapshot's bytes are gone when
   * `remove` returns.
   */
  async #discard(ws: Workspace, later = false): Promise<void> {
    if (ws.done) return;
    ws.done = true;
    try {
      if (ws.mounted) await unmount(ws.mounted);
      ws.mounted = undefined;
      if (!later) await rm(ws.dir, { recursive: true, force: true });
    } finally {
      ws.unregister();
    }
    if (!later) return;
    const removal: Promise<void> = rm(ws.dir, { recursive: true, force: true })
      .catch(() => undefined)
      .finally(() => this.#removing.delete(removal));
    this.#removing.add(removal);
  }

  /** Waits until the workspaces released so far are removed. */
  async removed(): Promise<void> {
    await Promise.all([...this.#removing]);
  }

  #dir(id: string): string {
    return join(this.#snapshots, keyOf(id));
  }

  /** The committed files of a snapshot (read-only by convention). */
  path(id: string): string {
    return join(this.#dir(id), "fs");
  }

  /**
   * The committed dirs an overlay snapshot's diff sits on, top-most first (undefined for the
   * copy driver, whose snapshots are full trees).
   */
  async info(id: string): Promise<SnapshotInfo | undefined> {
    await this.driver();
    let meta: SnapshotInfo;
    try {
      meta = JSON.parse(readFileSync(join(this.#dir(id), "meta.json"), "utf8")) as SnapshotInfo;
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      throw new KilnError(
        "E_SNAPSHOT_CORRUPT",
        `snapshot ${id}: unreadable metadata: ${messageOf(e)}`,
        {
          hint: "Remove the snapshot (or the whole state dir) and build again.",
          cause: e,
        },
      );
    }
    if (meta.id !== id) {
      throw new KilnError(
        "E_SNAPSHOT_COLLISION",
        `snapshot ${id} collides with ${meta.id} on disk`,
        {
          hint: `Remove ${meta.id} and build again.`,
        },
      );
    }
    if (await this.#cutOff(id, meta)) return undefined;
    this.#known.add(id);
    return meta;
  }

  /** Published but never synced by a process that is gone: its files may be incomplete. */
  async #cutOff(id: string, meta: SnapshotInfo): Promise<boolean> {
    if (meta.owner === undefined || meta.owner === this.#ownerTag) return false;
    if (existsSync(join(this.#dir(id), SYNCED))) return false;
    return !(await isOwnerAlive(meta.owner));
  }

  /**
   * Resolves once every snapshot this process published is on disk; rejects with
   * E_SNAPSHOT_SYNC when a syncfs failed (those snapshots then count as absent to later builds).
   */
  async durable(): Promise<void> {
    while (this.#syncing) await this.#syncing;
    if (this.#syncError !== undefined) {
      const cause = this.#syncError;
      this.#syncError = undefined;
      throw new KilnError("E_SNAPSHOT_SYNC", `flushing snapshots: ${messageOf(cause)}`, {
        hint: "check the disk holding the state dir; the steps will run again next time",
        cause,
      });
    }
  }

  /** One syncfs at a time, each covering every snapshot published before it started. */
  #syncSoon(id: string): void {
    this.#unsynced.add(id);
    this.#syncing ??= this.#syncAll().finally(() => {
      this.#syncing = undefined;
    });
  }

  async #syncAll(): Promise<void> {
    while (this.#unsynced.size > 0) {
      const ids = [...this.#unsynced];
      this.#unsynced.clear();
      try {
        await runBriefChecked("sync", ["-f", this.#snapshots], { errorCode: "E_SNAPSHOT_SYNC" });
      } catch (e) {
        this.#syncError = e;
        return;
      }
      for (const id of ids) {
        try {
          writeFileSync(join(this.#dir(id), SYNCED), "");
        } catch (e) {
          if (!isErrno(e, "ENOENT")) this.#syncError = e; // ENOENT: removed meanwhile
        }
      }
    }
  }

  /** Where committed snapshots and active workspaces live (for `kiln du`/`prune`). */
  get dirs(): { snapshots: string; active: string } {
    return { snapshots: this.#snapshots, active: this.#activeRoot };
  }

  /** Whether an entry of the snapshots dir is the snapshotter's own (not one snapshot's). */
  isOwnEntry(name: string): boolean {
    return name === EMPTY;
  }

  /**
   * Every committed snapshot directory (`name` in the snapshots dir) with its metadata
   * (undefined when meta.json is missing or unreadable: a leftover that no mount can use).
   * The empty lower dir is not listed.
   */
  async list(): Promise<{ name: string; dir: string; info: SnapshotInfo | undefined }[]> {
    await this.driver();
    const out: { name: string; dir: string; info: SnapshotInfo | undefined }[] = [];
    for (const name of await readdir(this.#snapshots)) {
      if (name === EMPTY) continue;
      const dir = join(this.#snapshots, name);
      let info: SnapshotInfo | undefined;
      try {
        const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as SnapshotInfo;
        const valid = typeof meta.id === "string" && Array.isArray(meta.parents);
        if (valid && keyOf(meta.id) === name) info = meta;
      } catch {
        // no or torn metadata: listed as a leftover
      }
      out.push({ name, dir, info });
    }
    return out;
  }

  /** Whether an active mount of this process reads from the snapshot. */
  isInUse(id: string): boolean {
    for (const { uses } of this.#inUse.values()) if (uses.includes(id)) return true;
    return false;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.info(id)) !== undefined;
  }

  async #requireAll(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      if (!this.#known.has(id) && !(await this.exists(id))) {
        throw new KilnError("E_SNAPSHOT_NOT_FOUND", `snapshot ${id} does not exist`, {
          hint: "The build cache may have been pruned meanwhile; run the build again.",
        });
      }
    }
  }

  #claim(id: string, parents: readonly string[]): Claim {
    if (this.#inUse.has(id)) {
      throw new KilnError("E_SNAPSHOT_ACTIVE", `snapshot ${id} is already being prepared`);
    }
    const claim: Claim = { parents, uses: parents, ws: undefined };
    this.#inUse.set(id, claim);
    return claim;
  }

  /** A writable root filesystem on top of parents (committed ids, bottom first). */
  async prepare(id: string, parents: readonly string[]): Promise<ActiveMount> {
    const driver = await this.driver();
    await this.#requireAll(parents);
    const claim = this.#claim(id, parents);
    try {
      const w = this.#workspace(id);
      claim.ws = w;
      const free = async () => {
        this.#inUse.delete(id);
        await this.#discard(w, true);
      };
      if (driver === "copy") {
        const rootfs = join(w.dir, "upper");
        const base = await this.#treeOf(parents);
        if (base) claim.uses = [...parents, base.id];
        await this.#copyTree(base?.path, rootfs);
        return { id, driver, rootfs, upperdir: rootfs, base: base?.path, release: free };
      }
      for (const d of ["upper", "work", "merged"]) mkdirSync(join(w.dir, d));
      const rel = `../active/${w.dir.slice(w.dir.lastIndexOf("/") + 1)}`;
      const upper = { upper: `${rel}/upper`, work: `${rel}/work` };
      const chain = await this.#fitChain([...parents], upper);
      claim.uses = [...parents, ...chain];
      await mountOverlay(
        { ...upper, lowers: chain.length ? this.#lowers(chain) : [EMPTY] },
        join(w.dir, "merged"),
        this.#snapshots,
      );
      w.mounted = join(w.dir, "merged");
      return {
        id,
        driver,
        rootfs: w.mounted,
        upperdir: join(w.dir, "upper"),
        base: undefined,
        release: free,
      };
    } catch (e) {
      this.#inUse.delete(id);
      if (claim.ws) await this.#discard(claim.ws);
      throw e;
    }
  }

  /**
   * Whether a layer can be unpacked before its parents are committed (newEmpty): with overlayfs
   * a layer is a directory of its own; the copy driver starts it from its parents' tree.
   */
  async layersApart(): Promise<boolean> {
    return (await this.driver()) === "overlay";
  }

  /**
   * An empty layer directory to unpack into (see ActiveLayer.whiteouts), then commit. The
   * parents must be committed now with the copy driver, by the commit when layersApart().
   */
  async newEmpty(id: string, parents: readonly string[] = []): Promise<ActiveLayer> {
    const driver = await this.driver();
    // a layer unpacked now is mounted by a step soon: the mount helper starts meanwhile
    if (driver === "overlay") prepareMountHelper();
    else await this.#requireAll(parents);
    const claim = this.#claim(id, parents);
    let ws: Workspace;
    try {
      ws = this.#workspace(id);
    } catch (e) {
      this.#inUse.delete(id);
      throw e;
    }
    claim.ws = ws;
    const dir = join(ws.dir, "upper");
    const free = async () => {
      this.#inUse.delete(id);
      await this.#discard(ws, true);
    };
    try {
      if (driver === "copy") {
        const base = await this.#treeOf(parents);
        if (base) claim.uses = [...parents, base.id];
        await this.#copyTree(base?.path, dir);
      } else await mkdir(dir);
    } catch (e) {
      await free();
      throw e;
    }
    return {
      id,
      driver,
      dir,
      upperdir: dir,
      whiteouts: driver === "overlay" ? "overlay" : "apply",
      release: free,
    };
  }

  /**
   * Turn an active mount or layer's upperdir into the committed, immutable snapshot newId.
   * The active one is released. Fails with E_SNAPSHOT_EXISTS if newId is already committed.
   */
  async commit(id: string, active: ActiveMount | ActiveLayer, newId: string): Promise<void> {
    if (active.id !== id) {
      throw new KilnError(
        "E_SNAPSHOT_ACTIVE",
        `commit of ${id} was given the active snapshot ${active.id}`,
      );
    }
    const driver = await this.driver();
    const claim = this.#inUse.get(id);
    if (claim?.ws === undefined) {
      throw new KilnError(
        "E_SNAPSHOT_ACTIVE",
        `snapshot ${id} is not active (already committed or released?)`,
      );
    }
    const ws = claim.ws;
    try {
      // a snapshot is never committed above a parent that is not (see newEmpty)
      await this.#requireAll(claim.parents);
      // The upperdir must be quiescent before it becomes immutable.
      if (ws.mounted) await unmount(ws.mounted);
      ws.mounted = undefined;
      const staging = join(ws.dir, "commit");
      await mkdir(staging);
      await rename(active.upperdir, join(staging, "fs"));
      const meta: SnapshotInfo = {
        id: newId,
        parents: [...claim.parents],
        driver,
        created: new Date().toISOString(),
      };
      await this.#publish(staging, meta);
    } finally {
      await active.release();
    }
  }

  /**
   * Write meta.json and make the snapshot visible with one rename; it is flushed to disk in
   * the background (see durable). One left by a crash before its flush is replaced.
   */
  async #publish(staging: string, meta: SnapshotInfo, allowExisting = false): Promise<void> {
    const owned = { ...meta, owner: this.#ownerTag };
    // two quick calls on small things: synchronous, not queued behind slow ones on the pool
    writeFileSync(join(staging, "meta.json"), `${JSON.stringify(owned)}\n`);
    const publish = () => {
      renameSync(staging, this.#dir(meta.id));
      this.#known.add(meta.id);
      this.#syncSoon(meta.id);
    };
    try {
      publish();
    } catch (e) {
      if (!isErrno(e, "EEXIST", "ENOTEMPTY")) throw e;
      if (!this.#known.has(meta.id) && (await this.info(meta.id)) === undefined) {
        await rm(this.#dir(meta.id), { recursive: true, force: true });
        publish();
        return;
      }
      if (allowExisting) return;
      throw new KilnError("E_SNAPSHOT_EXISTS", `snapshot ${meta.id} already exists`, {
        hint: "Check exists() before building a snapshot, or remove the old one first.",
      });
    }
  }

  /** Delete a committed snapshot. Refused while an active mount reads from it. */
  async remove(id: string): Promise<void> {
    // on disk, whether or not it counts (one a crash cut off before its flush is removed too)
    if (!existsSync(join(this.#dir(id), "meta.json"))) return;
    for (const [activeId, { uses }] of this.#inUse) {
      if (uses.includes(id)) {
        throw new KilnError("E_SNAPSHOT_IN_USE", `snapshot ${id} is in use by ${activeId}`, {
          hint: "Release the active mount first.",
        });
      }
    }
    this.#known.delete(id);
    const ws = this.#workspace(`remove ${id}`);
    // Renaming first means a crash mid-delete never leaves a half-deleted visible snapshot.
    await rename(this.#dir(id), join(ws.dir, "gone"));
    await this.#discard(ws);
  }

  #lowers(chain: readonly string[]): string[] {
    return chain.map((id) => `${keyOf(id)}/fs`).reverse();
  }

  /**
   * A chain equivalent to the given one whose overlay options fit one page: when too long,
   * the bottom layers are merged into one cached "flat:" snapshot (a plain tree).
   */
  async #fitChain(chain: string[], upper: Pick<OverlayDirs, "upper" | "work">): Promise<string[]> {
    const fits = (ids: readonly string[]) =>
      overlayFits({ ...upper, lowers: this.#lowers(ids) }, this.#optionsLimit);
    if (chain.length === 0 || fits(chain)) return chain;
    const placeholder = flatSnapshotId([]);
    let keep = chain.length - 1;
    while (keep > 0 && !fits([placeholder, ...chain.slice(chain.length - keep)])) keep--;
    const prefix = chain.slice(0, chain.length - keep);
    const flatId = flatSnapshotId(prefix);
    if (!(await this.exists(flatId))) await this.#flatten(prefix, flatId);
    return [flatId, ...chain.slice(chain.length - keep)];
  }

  async #flatten(chain: string[], flatId: string): Promise<void> {
    const fitted = await this.#fitChain(chain, {});
    const ws = this.#workspace(`flatten ${flatId}`);
    try {
      let source = this.path(fitted[0]!);
      if (fitted.length > 1) {
        const merged = join(ws.dir, "merged");
        await mkdir(merged);
        await mountOverlay({ lowers: this.#lowers(fitted) }, merged, this.#snapshots);
        ws.mounted = merged;
        source = merged;
      }
      await this.#publishFlat(ws, flatId, "overlay", async (fs) => {
        await this.#copyTree(source, fs);
        if (ws.mounted) await unmount(ws.mounted);
        ws.mounted = undefined;
      });
    } finally {
      await this.#discard(ws);
    }
  }

  /** Publish the plain tree `fill` writes into a new directory as the parentless flatId. */
  async #publishFlat(
    ws: Workspace,
    flatId: string,
    driver: SnapshotDriver,
    fill: (fs: string) => Promise<void>,
  ): Promise<void> {
    const staging = join(ws.dir, "commit");
    await mkdir(staging);
    await fill(join(staging, "fs"));
    const meta = { id: flatId, parents: [], driver, created: new Date().toISOString() };
    await this.#publish(staging, meta, true);
  }

  /**
   * A committed snapshot's layer: its changes over its parents as a tar, deletions as OCI
   * whiteouts. overlay: the upperdir as it is; copy: its tree compared with its parents' tree.
   */
  async diff(id: string, opts: WalkOptions = {}): Promise<AsyncIterable<Buffer>> {
    return diffOf(await this.layerDiff(id), opts);
  }

  /** Where `diff` finds the snapshot's changes (for diffOf and diffSignature). */
  async layerDiff(id: string): Promise<LayerDiff> {
    const info = await this.info(id);
    if (info === undefined) {
      throw new KilnError("E_SNAPSHOT_NOT_FOUND", `snapshot ${id} does not exist`, {
        hint: "The build cache may have been pruned meanwhile; run the build again.",
      });
    }
    if (info.driver === "overlay") {
      // the lowers let the diff leave out what the step left as it was (BuildKit's differ)
      const lowers = info.parents.map((p) => this.path(p)).reverse();
      return { kind: "upperdir", upperdir: this.path(id), lowers };
    }
    const base = await this.#treeOf(info.parents);
    return { kind: "trees", lower: base?.path, upper: this.path(id) };
  }

  /**
   * copy driver: a committed snapshot holding exactly the tree of `chain` (undefined for the
   * empty chain) — its top, when that was made on the rest of the chain, else its "flat:" tree,
   * built now if missing.
   */
  async #treeOf(chain: readonly string[]): Promise<{ id: string; path: string } | undefined> {
    const top = chain.at(-1);
    if (top === undefined) return undefined;
    const info = await this.info(top);
    if (info !== undefined && sameChain(info.parents, chain.slice(0, -1)))
      return { id: top, path: this.path(top) };
    const flatId = flatSnapshotId(chain);
    if (!(await this.exists(flatId))) {
      const below = await this.#treeOf(chain.slice(0, -1));
      const ws = this.#workspace(`flatten ${flatId}`);
      try {
        await this.#publishFlat(ws, flatId, "copy", async (fs) => {
          await this.#copyTree(below?.path, fs);
          await applyLayer(await this.diff(top), fs, { whiteouts: "delete" });
        });
      } finally {
        await this.#discard(ws);
      }
    }
    return { id: flatId, path: this.path(flatId) };
  }

  /** cp -a --reflink=auto of src's contents into a new dir dest (empty dest when src is undefined). */
  async #copyTree(src: string | undefined, dest: string): Promise<void> {
    await mkdir(dest);
    if (src === undefined) return;
    await runChecked("cp", ["-a", "--reflink=auto", "--", `${src}/.`, dest], {
      errorCode: "E_SNAPSHOT_COPY",
      hint: "Check free disk space under the state directory.",
    });
  }

  /**
   * Crash recovery, run at startup: unmount every mount under root whose owning process is
   * gone (lazily if busy) and delete its workspace. Workspaces of live processes are kept.
   */
  async cleanupStale(): Promise<{ unmounted: string[]; removed: string[] }> {
    await this.driver();
    const stale = async (name: string): Promise<boolean> => {
      const tag = /^(\d+-\d+)-[0-9a-f]+$/.exec(name)?.[1] ?? "";
      return tag !== this.#ownerTag && !(await isOwnerAlive(tag));
    };
    const unmounted: string[] = [];
    for (const point of mountsUnder(await readMountInfo(), this.#activeRoot)) {
      const name = point.slice(this.#activeRoot.length + 1).split("/")[0] ?? "";
      if (await stale(name)) {
        await unmount(point);
        unmounted.push(point);
      }
    }
    const removed: string[] = [];
    for (const name of await readdir(this.#activeRoot)) {
      if (await stale(name)) {
        await rm(join(this.#activeRoot, name), { recursive: true, force: true });
        removed.push(name);
      }
    }
    return { unmounted, removed };
  }
}
