/**
 * Finding a program inside an unpacked rootfs the way the container would: PATH search and
 * symlinks resolved against the rootfs (src/rootpath), never escaping it.
 */
import { open, stat } from "node:fs/promises";
import path from "node:path";
import { resolveInRoot } from "../rootpath/index.js";

/** The PATH a container gets when its image sets none. */
export const DEFAULT_CONTAINER_PATH =
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface ResolvedProgram {
  /** Path inside the container (before symlinks), e.g. `/bin/sh`. */
  containerPath: string;
  /** The file on the host after resolving symlinks within the rootfs. */
  hostPath: string;
}

/**
 * Resolves argv[0] like execvp in the container: names without `/` are searched in PATH;
 * relative names and PATH entries are taken from `cwd`. Only executable regular files count.
 */
export async function resolveProgram(
  rootfs: string,
  argv0: string,
  pathEnv: string = DEFAULT_CONTAINER_PATH,
  cwd = "/",
): Promise<ResolvedProgram | undefined> {
  const candidates = argv0.includes("/")
    ? [path.posix.resolve(cwd, argv0)]
    : pathEnv
        .split(":")
        .filter((d) => d !== "")
        .map((d) => path.posix.join(path.posix.resolve(cwd, d), argv0));
  for (const containerPath of candidates) {
    let hostPath: string;
    try {
      hostPath = await resolveInRoot(rootfs, containerPath, { followFinal: true });
    } catch {
      continue; // a symlink loop only rules out this candidate, as in execvp
    }
    const st = await stat(hostPath).catch(() => undefined);
    if (st?.isFile() && (st.mode & 0o111) !== 0) return { containerPath, hostPath };
  }
  return undefined;
}

/** `#!interp [arg]` of a script, or undefined for anything else (e.g. an ELF binary). */
export function parseShebang(head: Uint8Array): { interpreter: string; arg?: string } | undefined {
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const nl = head.indexOf(0x0a);
  const line = Buffer.from(head.subarray(2, nl === -1 ? head.length : nl))
    .toString("utf8")
    .trim();
  const m = /^(\S+)(?:\s+(.*))?$/.exec(line);
  if (!m) return undefined;
  return m[2] ? { interpreter: m[1]!, arg: m[2] } : { interpreter: m[1]! };
}

/** Up to `n` leading bytes of a file; undefined if it cannot be read. */
export async function readHead(file: string, n = 4096): Promise<Uint8Array | undefined> {
  let fh;
  try {
    fh = await open(file, "r");
    const buf = new Uint8Array(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}
