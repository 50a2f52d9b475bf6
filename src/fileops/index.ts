/** File operations on a root filesystem directory: COPY/ADD, WORKDIR's mkdir, heredoc files. */
import { chmod, lchown, lstat, mkdir, rm, writeFile } from "node:fs/promises";
import { KilnError } from "../errors.js";
import { ensureParents, type Owner } from "./copy.js";
import { cleanInRoot, resolveInRoot } from "./resolve.js";

export { copyInto, ensureParents, type CopyRequest, type CopySource, type Owner } from "./copy.js";
export { parseChmod } from "./chmod.js";
export { cleanInRoot, resolveInRoot } from "./resolve.js";
export { compileGlob, hasWildcard } from "./glob.js";

export async function mkdirIn(
  root: string,
  path: string,
  opts: { mode: number; makeParents: boolean; owner?: Owner },
): Promise<void> {
  const clean = cleanInRoot(path);
  if (opts.makeParents) await ensureParents(root, clean, opts.owner);
  const host = await resolveInRoot(root, clean, { followFinal: true });
  try {
    const st = await lstat(host);
    if (st.isDirectory()) return;
    throw new KilnError("E_MKDIR", `cannot create directory ${clean}: a file exists there`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  await mkdir(host);
  await chmod(host, opts.mode);
  if (opts.owner) await lchown(host, opts.owner.uid, opts.owner.gid);
}

export async function mkfileIn(
  root: string,
  path: string,
  data: string | Uint8Array,
  opts: { mode: number; owner?: Owner },
): Promise<void> {
  const clean = cleanInRoot(path);
  await ensureParents(root, clean, opts.owner);
  const host = await resolveInRoot(root, clean, { followFinal: false });
  await rm(host, { force: true, recursive: true });
  await writeFile(host, data, { mode: opts.mode, flag: "wx" });
  await chmod(host, opts.mode);
  if (opts.owner) await lchown(host, opts.owner.uid, opts.owner.gid);
}

export async function rmIn(root: string, path: string, allowNotFound: boolean): Promise<void> {
  const host = await resolveInRoot(root, path, { followFinal: false });
  if (host === root) throw new KilnError("E_RM", "refusing to remove the root directory");
  try {
    await lstat(host);
  } catch (e) {
    if (allowNotFound) return;
    throw new KilnError("E_RM", `cannot remove ${path}: not found`, { cause: e });
  }
  await rm(host, { recursive: true, force: true });
}
