/**
 * Persistent `RUN --mount=type=cache` directories with BuildKit's sharing modes: `shared`
 * (one directory, concurrent users), `locked` (one user at a time) and `private` (a directory
 * of its own while another user holds the usual one). Who holds which directory is recorded in
 * the state dir's metadata database, so the modes hold across kiln processes; a hold dies with
 * its process (a SIGKILLed holder's row is swept by the next waiter). kiln also warns when two
 * platforms use a shared cache at the same time, a common source of corruption (docker/buildx#549).
 */
import { createHash } from "node:crypto";
import { chmod, chown, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { CacheMountHolder, MetadataStore } from "../metadata/index.js";

export interface CacheMountRequest {
  id: string;
  sharing: "shared" | "private" | "locked";
  mode: number;
  uid: number;
  gid: number;
  /** who uses it, for the concurrent-use warning (a platform) */
  user: string;
}

export interface AcquiredCache {
  dir: string;
  /** true when the directory was just created (seed it from `from=` then) */
  created: boolean;
  release(): void;
}

/** How often a waiter for a held directory looks again. */
const POLL_MS = 50;

export class CacheMounts {
  constructor(
    private readonly root: string,
    private readonly metadata: MetadataStore,
    private readonly warn: (message: string) => void,
  ) {}

  private async ensure(dir: string, r: CacheMountRequest): Promise<boolean> {
    try {
      await mkdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    }
    await chmod(dir, r.mode);
    await chown(dir, r.uid, r.gid);
    return true;
  }

  /** The directory to use, once the sharing mode allows (waits while it does not). */
  async acquire(r: CacheMountRequest, signal?: AbortSignal): Promise<AcquiredCache> {
    const base = join(this.root, createHash("sha256").update(r.id).digest("hex").slice(0, 32));
    const choose = (holdersOf: (dir: string) => CacheMountHolder[]): string | undefined => {
      switch (r.sharing) {
        case "private":
          // the first free instance: base, base-1, base-2, …
          for (let n = 0; ; n++) {
            const dir = n === 0 ? base : `${base}-${n}`;
            if (holdersOf(dir).length === 0) return dir;
          }
        case "locked":
          return holdersOf(base).length === 0 ? base : undefined;
        case "shared":
          return holdersOf(base).some((h) => h.sharing === "locked") ? undefined : base;
      }
    };
    const hold = { sharing: r.sharing, user: r.user };
    let held = await this.metadata.tryHoldCacheMount(choose, hold);
    while (held === undefined) {
      // the holder may be dead: its row goes, then look again
      await this.metadata.sweepDeadOwners();
      held = await this.metadata.tryHoldCacheMount(choose, hold);
      if (held === undefined) await sleep(POLL_MS, undefined, { signal });
    }
    const { id, dir, others } = held;
    const otherUsers = [...new Set(others.map((h) => h.user))].filter((u) => u !== r.user);
    if (r.sharing === "shared" && otherUsers.length > 0) {
      this.warn(
        `cache mount ${JSON.stringify(r.id)} is used by ${otherUsers.join(", ")} and ${r.user} at the same time with sharing=shared; ` +
          "if the tool in it is not safe for concurrent use, add sharing=locked or an id per platform (id=…-$TARGETPLATFORM)",
      );
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.metadata.releaseCacheMount(id);
    };
    try {
      return { dir, created: await this.ensure(dir, r), release };
    } catch (e) {
      release();
      throw e;
    }
  }
}
