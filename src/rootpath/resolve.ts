/**
 * Path resolution scoped to a root directory, the way a chroot would see it: `..` stops at
 * the root and symlinks (absolute or relative) are resolved inside the root. Nothing a
 * build context, a layer, an image or a Dockerfile says can make us touch a path outside it.
 * The one implementation for fileops (COPY/ADD), the executor (cwd, mount targets, users)
 * and emulation (finding a program in a rootfs).
 */
import { lstatSync, readlinkSync } from "node:fs";
import { posix, join } from "node:path";
import { KilnError } from "../errors.js";

/** As BuildKit (continuity fs.RootPath): far above the kernel's 40, for deep link farms. */
const MAX_LINKS = 255;

/**
 * Clean a path as seen from inside the root: absolute, no `.`/`..`/empty components. A
 * trailing slash is kept.
 */
export function cleanInRoot(p: string): string {
  return posix.normalize(posix.join("/", p));
}

function isNotFound(e: unknown): boolean {
  return (
    (e as NodeJS.ErrnoException).code === "ENOENT" ||
    (e as NodeJS.ErrnoException).code === "ENOTDIR"
  );
}

interface ResolveOptions {
  followFinal: boolean;
  onSymlink?: (host: string) => void;
}

/**
 * The host path of `p` inside `root`. Intermediate symlinks are always followed (scoped);
 * the final component is followed only with `followFinal`. Missing components are fine:
 * the result is where they would be created. `onSymlink` hears the host path of every symlink
 * followed. A failure rejects the promise.
 */
export function resolveInRoot(root: string, p: string, opts: ResolveOptions): Promise<string> {
  return new Promise((resolve) => {
    resolve(resolveInRootSync(root, p, opts));
  });
}

/**
 * resolveInRoot, synchronously: a resolution is a few lstat calls, each much cheaper than a
 * thread-pool round trip.
 */
export function resolveInRootSync(root: string, p: string, opts: ResolveOptions): string {
  let pending = cleanInRoot(p).split("/").filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === "..") {
      resolved.pop();
      continue;
    }
    if (name === ".") continue;
    const last = pending.length === 0;
    const host = join(root, ...resolved, name);
    if (last && !opts.followFinal) {
      resolved.push(name);
      break;
    }
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!isLink) {
      resolved.push(name);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new KilnError("E_SYMLINK_LOOP", `too many levels of symbolic links resolving ${p}`, {
        hint: "a symlink in this path points back to itself; fix or remove it in the image or context",
      });
    }
    opts.onSymlink?.(host);
    const target = readlinkSync(host);
    const rest = target.split("/").filter(Boolean);
    if (target.startsWith("/")) resolved.length = 0;
    pending = [...rest, ...pending];
  }
  return join(root, ...resolved);
}
