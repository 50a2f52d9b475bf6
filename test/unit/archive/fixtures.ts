/** Helpers shared by the archive tests: describe a directory tree exactly, run tools. */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { getAttributeSync, listAttributesSync } from "@napi-rs/xattr";

export interface NodeInfo {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime?: number;
  sha256?: string;
  link?: string;
  rdev?: string;
  /** For hardlinked inodes: the first path (in walk order) of the inode. */
  inode?: string;
  xattrs?: Record<string, string>;
}

/** Every node under root (root excluded) with its metadata, xattr values in hex. */
export function describeTree(
  root: string,
  opts: { mtimes?: boolean; skipXattrs?: RegExp } = {},
): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<number, string>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const p = join(root, r);
      const st = lstatSync(p);
      const info: NodeInfo = {
        type: st.isDirectory()
          ? "dir"
          : st.isFile()
            ? "file"
            : st.isSymbolicLink()
              ? "symlink"
              : st.isFIFO()
                ? "fifo"
                : st.isCharacterDevice()
                  ? "char"
                  : "other",
        mode: (st.mode & 0o7777).toString(8),
        uid: st.uid,
        gid: st.gid,
      };
      if (opts.mtimes && !st.isDirectory()) info.mtime = Math.floor(st.mtimeMs / 1000);
      if (st.isFile()) info.sha256 = createHash("sha256").update(readFileSync(p)).digest("hex");
      if (st.isSymbolicLink()) info.link = readlinkSync(p);
      if (st.isCharacterDevice()) info.rdev = String(st.rdev);
      if (!st.isDirectory() && st.nlink > 1) {
        const first = inodes.get(st.ino) ?? r;
        inodes.set(st.ino, first);
        info.inode = first;
      }
      if (!st.isSymbolicLink()) {
        const xattrs: Record<string, string> = {};
        for (const k of listAttributesSync(p).sort()) {
          if (opts.skipXattrs?.test(k)) continue;
          xattrs[k] = getAttributeSync(p, k)!.toString("hex");
        }
        if (Object.keys(xattrs).length > 0) info.xattrs = xattrs;
      }
      out[r] = info;
      if (st.isDirectory()) visit(r);
    }
  };
  visit("");
  return out;
}

/** Run a command; throw with its stderr if it fails. Returns stdout. */
export function sh(cmd: string, args: string[], input?: Buffer | string): string {
  const r = spawnSync(cmd, args, { input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.toString()}`);
  }
  return r.stdout.toString();
}

/** A security.capability value with bytes >= 0x80 (cap_setuid,cap_ipc_owner,... +eip). */
export const BINARY_CAP = "cap_setuid,cap_ipc_owner,cap_sys_nice,cap_setfcap+eip";

/** Recompute the checksum of the header block at `at` after patching it. */
export function fixChecksum(tar: Buffer, at: number): void {
  tar.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + 512; i++) sum += tar[i]!;
  tar.write(sum.toString(8).padStart(6, "0") + "\0 ", at + 148, 8, "ascii");
}

export function rawHeader(name: string, typeflag: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100);
  b.write("0000644\0", 100);
  b.write("0000000\0", 108);
  b.write("0000000\0", 116);
  b.write(size.toString(8).padStart(11, "0") + "\0", 124);
  b.write("00000000000\0", 136);
  b.write(typeflag, 156);
  b.write("ustar\x0000", 257, "latin1");
  fixChecksum(b, 0);
  return b;
}

export function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}
