import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { KilnError } from "../errors.js";
import { resolveInRootSync } from "../rootpath/index.js";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups, primary gid first (as containerd/BuildKit pass them to runc). */
  additionalGids: number[];
}

const MAX_ID = 2 ** 31 - 1;

function parseId(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

/** Parse /etc/passwd text; lines without a numeric uid and gid are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(":");
    if (f.length < 4) continue;
    const uid = parseId(f[2]!);
    const gid = parseId(f[3]!);
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0]!, uid, gid, home: f[5] ?? "" });
  }
  return out;
}

/** Parse /etc/group text; lines without a numeric gid are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(":");
    if (f.length < 3) continue;
    const gid = parseId(f[2]!);
    if (gid === undefined) continue;
    const members = (f[3] ?? "").split(",").filter(Boolean);
    out.push({ name: f[0]!, gid, members });
  }
  return out;
}

function userError(spec: string, what: string): KilnError {
  return new KilnError("E_EXEC_USER", `cannot resolve user "${spec}": ${what}`, {
    hint: "Create the user/group in the image first (e.g. RUN adduser) or use numeric uid:gid.",
  });
}

/**
 * Resolve a USER value (`name|uid[:group|gid]`, empty = root) against the image's passwd and
 * group files, with the semantics of BuildKit/runc: numeric ids need no entry; a named user or
 * group must exist; supplementary groups come from group membership only when no group is given.
 */
export function resolveUser(
  spec: string,
  passwdText: string | undefined,
  groupText: string | undefined,
): ResolvedUser {
  const withPrimary = (u: { uid: number; gid: number; sgids: number[] }): ResolvedUser => ({
    uid: u.uid,
    gid: u.gid,
    additionalGids: u.sgids.includes(u.gid) ? u.sgids : [u.gid, ...u.sgids],
  });
  const userArg = spec === "" ? "0" : spec.split(":")[0]!;
  const groupArg = spec.includes(":") ? spec.slice(spec.indexOf(":") + 1) : "";

  // Fast path: "uid:gid" (root counts as 0) needs no files at all.
  const fastUid = userArg === "root" ? 0 : parseId(userArg);
  const fastGid = groupArg === "root" ? 0 : parseId(groupArg);
  if (groupArg !== "" && fastUid !== undefined && fastGid !== undefined) {
    return withPrimary({ uid: fastUid, gid: fastGid, sgids: [] });
  }

  const users = passwdText === undefined ? [] : parsePasswd(passwdText);
  const groups = groupText === undefined ? [] : parseGroup(groupText);
  const uidArg = parseId(userArg);
  const user = users.find((u) => (uidArg !== undefined ? u.uid === uidArg : u.name === userArg));
  let uid = 0;
  let gid = 0;
  let sgids: number[] = [];
  if (user) {
    uid = user.uid;
    gid = user.gid;
  } else if (uidArg !== undefined) {
    uid = uidArg;
  } else if (spec !== "") {
    throw userError(spec, `no user "${userArg}" in /etc/passwd`);
  }

  if (groupArg !== "") {
    const gidArg = parseId(groupArg);
    const group = groups.find((g) =>
      gidArg !== undefined ? g.gid === gidArg : g.name === groupArg,
    );
    if (group) gid = group.gid;
    else if (gidArg !== undefined) gid = gidArg;
    else throw userError(spec, `no group "${groupArg}" in /etc/group`);
  } else if (user) {
    sgids = groups.filter((g) => g.members.includes(user.name)).map((g) => g.gid);
  }
  return withPrimary({ uid, gid, sgids });
}

/** Files larger than this are not a passwd/group file we should trust. */
const MAX_USER_FILE_BYTES = 10 * 1024 * 1024;

/** Read a small regular file inside rootfs (symlinks confined to it); undefined if absent. */
export function readRootFile(rootfs: string, path: string): string | undefined {
  const host = resolveInRootSync(rootfs, path, { followFinal: true });
  let fd;
  try {
    fd = openSync(host, "r");
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    if (st.size > MAX_USER_FILE_BYTES) {
      throw new KilnError("E_EXEC_USER", `${path} in the image is larger than 10 MiB`);
    }
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/**
 * Resolve a USER value against the rootfs's /etc/passwd and /etc/group (small files, read
 * synchronously when a container is set up).
 */
export function lookupUser(rootfs: string, spec: string): ResolvedUser {
  return resolveUser(spec, readRootFile(rootfs, "/etc/passwd"), readRootFile(rootfs, "/etc/group"));
}
