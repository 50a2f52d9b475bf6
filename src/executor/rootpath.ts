import { lstat, readlink } from "node:fs/promises";
import { posix } from "node:path";
import { KilnError } from "../errors.js";

const MAX_SYMLINKS = 255;

/**
 * The host path of `path` as seen inside the container rooted at `root`: symlinks are followed
 * component by component and resolved against root, never escaping it (absolute targets and
 * `..` stop at root). Missing components are kept as they are, so the result can be created.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  const pending = posix.normalize(`/${path}`).split("/").filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = posix.join(root, ...resolved, part);
    let st;
    try {
      st = await lstat(host);
    } catch {
      resolved.push(part, ...pending);
      break;
    }
    if (!st.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw new KilnError("E_EXEC_SYMLINK_LOOP", `too many levels of symbolic links in ${path}`, {
        hint: "Fix the symlink loop in the image.",
      });
    }
    const target = await readlink(host);
    if (target.startsWith("/")) resolved.length = 0;
    pending.unshift(...target.split("/").filter(Boolean));
  }
  return posix.join(root, ...resolved);
}
