/**
 * Persistent `RUN --mount=type=cache` directories with BuildKit's sharing modes: `shared`
 * (one directory, concurrent users), `locked` (one user at a time) and `private` (a directory
 * of its own while another user holds the usual one). kiln also warns when two platforms use
 * a shared cache at the same time, a common source of corruption (docker/buildx#549).
 */
import { createHash } from "node:crypto";
import { chmod, chown, mkdir } from "node:fs/promises";
import { join } from "node:path";

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

interface Slot {
  users: Map<number, string>;
  waiters: (() => void)[];
  locked: boolean;
}

export class CacheMounts {
  private readonly slots = new Map<string, Slot>();
  private nextUser = 0;

  constructor(
    private readonly root: string,
    private readonly warn: (message: string) => void,
  ) {}

  private slot(dir: string): Slot {
    let s = this.slots.get(dir);
    if (!s) {
      s = { users: new Map(), waiters: [], locked: false };
      this.slots.set(dir, s);
    }
    return s;
  }

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

  async acquire(r: CacheMountRequest): Promise<AcquiredCache> {
    const base = join(this.root, createHash("sha256").update(r.id).digest("hex").slice(0, 32));
    let dir = base;
    if (r.sharing === "private") {
      // the first free instance: base, base-1, base-2, …
      for (let n = 1; this.slot(dir).users.size > 0; n++) dir = `${base}-${n}`;
    }
    const s = this.slot(dir);
    if (r.sharing === "locked") {
      while (s.locked || s.users.size > 0) await new Promise<void>((res) => s.waiters.push(res));
      s.locked = true;
    } else if (r.sharing === "shared") {
      while (s.locked) await new Promise<void>((res) => s.waiters.push(res));
      const others = [...new Set(s.users.values())].filter((u) => u !== r.user);
      if (others.length > 0) {
        this.warn(
          `cache mount ${JSON.stringify(r.id)} is used by ${others.join(", ")} and ${r.user} at the same time with sharing=shared; ` +
            "if the tool in it is not safe for concurrent use, add sharing=locked or an id per platform (id=…-$TARGETPLATFORM)",
        );
      }
    }
    const me = this.nextUser++;
    s.users.set(me, r.user);
    const created = await this.ensure(dir, r);
    let released = false;
    return {
      dir,
      created,
      release: () => {
        if (released) return;
        released = true;
        s.users.delete(me);
        if (r.sharing === "locked") s.locked = false;
        for (const w of s.waiters.splice(0)) w();
      },
    };
  }
}
