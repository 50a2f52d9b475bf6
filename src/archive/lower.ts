/**
 * The read-only view below an overlay upperdir, resolved from its lowerdirs without a mount: a
 * path is what the top-most lowerdir holding it has, unless a whiteout or a non-directory above
 * hides it, or an opaque directory in a higher lowerdir cuts off the ones beneath.
 */
import type { BigIntStats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { getAttribute } from "../xattr.js";

export interface LowerEntry {
  /** where the visible file is on disk */
  abs: string;
  st: BigIntStats;
}

export function isWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

export function isOpaqueDir(abs: string): boolean {
  try {
    return getAttribute(abs, "trusted.overlay.opaque")?.toString() === "y";
  } catch {
    return false;
  }
}

async function lstatOrUndefined(p: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(p, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw e;
  }
}

export class OverlayLowers {
  /** @param dirs the lowerdirs, top-most first */
  constructor(readonly dirs: readonly string[]) {}

  async lookup(rel: string): Promise<LowerEntry | undefined> {
    const parts = rel.split("/");
    for (const dir of this.dirs) {
      let cutOff = false;
      for (let i = 0; i < parts.length; i++) {
        const abs = join(dir, ...parts.slice(0, i + 1));
        const st = await lstatOrUndefined(abs);
        if (st === undefined) break;
        if (isWhiteout(st)) return undefined;
        if (i === parts.length - 1) return { abs, st };
        if (!st.isDirectory()) return undefined;
        if (isOpaqueDir(abs)) cutOff = true;
      }
      if (cutOff) return undefined;
    }
    return undefined;
  }

  /** The names visible in directory `rel` of the lower view. */
  async list(rel: string): Promise<Set<string>> {
    const candidates = new Set<string>();
    for (const dir of this.dirs) {
      try {
        for (const name of await readdir(join(dir, rel))) candidates.add(name);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "ENOTDIR") throw e;
      }
    }
    const out = new Set<string>();
    for (const name of candidates)
      if ((await this.lookup(rel === "" ? name : `${rel}/${name}`)) !== undefined) out.add(name);
    return out;
  }
}
