/**
 * Finding a program inside an unpacked rootfs the way the container would: PATH search and
 * symlinks resolved against the rootfs, never escaping it.
 */
import { lstat, open, readlink } from "node:fs/promises";
import path from "node:path";

export const DEFAULT_CONTAINER_PATH =
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MAX_SYMLINKS = 40;

/**
 * The host path of `containerPath` inside `rootfs`, following symlinks (absolute targets
 * restart at the rootfs, `..` stops at it); undefined if something does not exist.
 */
export async function resolveInRoot(
  rootfs: string,
  containerPath: string,
): Promise<string | undefined> {
  let pending = containerPath.split("/").filter((c) => c !== "" && c !== ".");
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "..") {
      done.pop();
      continue;
    }
    const host = path.join(rootfs, ...done, part);
    const st = await lstat(host).catch(() => undefined);
    if (st === undefined) return undefined;
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return undefined;
      const target = await readlink(host);
      if (target.startsWith("/")) done.length = 0;
      pending = [...target.split("/").filter((c) => c !== "" && c !== "."), ...pending];
      continue;
    }
    done.push(part);
  }
  return path.join(rootfs, ...done);
}

export interface ResolvedProgram {
  /** Path inside the container (before symlinks), e.g. `/bin/sh`. */
  containerPath: string;
  /** The file on the host after resolving symlinks within the rootfs. */
  hostPath: string;
}

/** Resolves argv[0] like execvp in the container: names without `/` are searched in PATH. */
export async function resolveProgram(
  rootfs: string,
  argv0: string,
  pathEnv: string = DEFAULT_CONTAINER_PATH,
): Promise<ResolvedProgram | undefined> {
  const candidates = argv0.includes("/")
    ? [path.posix.resolve("/", argv0)]
    : pathEnv
        .split(":")
        .filter((d) => d !== "")
        .map((d) => path.posix.join(d, argv0));
  for (const containerPath of candidates) {
    const hostPath = await resolveInRoot(rootfs, containerPath);
    if (hostPath === undefined) continue;
    const st = await lstat(hostPath).catch(() => undefined);
    if (st?.isFile() && (st.mode & 0o111) !== 0) return { containerPath, hostPath };
  }
  return undefined;
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
