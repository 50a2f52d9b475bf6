/**
 * `--chown` values resolved the way BuildKit does: `user[:group]`, each part numeric or a
 * name looked up in the DESTINATION rootfs's /etc/passwd and /etc/group (read through
 * resolveInRoot, so a symlinked /etc/passwd cannot point outside it). `root` is always 0; a
 * user alone also sets the group to that user's primary group (or to the same number for a
 * numeric user). A name that is not found (or an empty one, as in `:group`) is not an error:
 * BuildKit's readUser leaves the id at 0 for a user and unchanged for a group.
 */
import { open } from "node:fs/promises";
import { KilnError } from "../errors.js";
import { resolveInRoot } from "../rootpath/index.js";

export interface Owner {
  uid: number;
  gid: number;
}

/** BuildKit refuses account databases beyond this size. */
const MAX_USER_FILE_BYTES = 10 << 20;

function numericId(s: string): number | undefined {
  if (s === "root") return 0;
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0x7fffffff ? n : undefined;
}

/** Reads /etc/passwd or /etc/group inside rootfs; undefined when it does not exist. */
async function readAccountFile(rootfs: string, path: string): Promise<string | undefined> {
  const host = await resolveInRoot(rootfs, path, { followFinal: true });
  let fh;
  try {
    fh = await open(host, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new KilnError("E_CHOWN", `${path} in the destination is not a regular file`);
    }
    if (st.size > MAX_USER_FILE_BYTES) {
      throw new KilnError(
        "E_CHOWN",
        `${path} in the destination exceeds ${MAX_USER_FILE_BYTES} bytes`,
      );
    }
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

/** The numeric fields of the first `name:x:...` line naming `name`. */
function lookup(text: string | undefined, name: string, idFields: number[]): number[] | undefined {
  for (const raw of (text ?? "").split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const fields = line.split(":");
    if (fields[0] !== name) continue;
    // unparsable numbers read as 0, like the Go parser BuildKit uses
    return idFields.map((i) => parseInt(fields[i] ?? "", 10) || 0);
  }
  return undefined;
}

/** Resolves a `--chown` value against the destination rootfs. */
export async function resolveOwner(rootfs: string, spec: string): Promise<Owner> {
  const sep = spec.indexOf(":");
  const userPart = sep < 0 ? spec : spec.slice(0, sep);
  const groupPart = sep < 0 ? undefined : spec.slice(sep + 1);
  let uid = numericId(userPart);
  let gid = uid ?? 0;
  if (uid === undefined) {
    const ids = lookup(await readAccountFile(rootfs, "/etc/passwd"), userPart, [2, 3]);
    [uid, gid] = ids ? (ids as [number, number]) : [0, 0];
  }
  if (groupPart !== undefined) {
    const g = numericId(groupPart);
    if (g !== undefined) gid = g;
    else gid = lookup(await readAccountFile(rootfs, "/etc/group"), groupPart, [2])?.[0] ?? gid;
  }
  return { uid, gid };
}
