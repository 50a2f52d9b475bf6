/**
 * Device nodes and FIFOs. Node has no mknod(2), so they are made with mknod(1), many per shell
 * so a layer full of overlay whiteouts does not cost one process each. The one place kiln makes
 * special files (layer apply, ADD, COPY) and the one dev_t decoder.
 */
import { messageOf, type KilnError } from "../errors.js";
import { run } from "../process/index.js";

export interface SpecialNode {
  /** Host path; must not exist (mknod never follows or replaces anything). */
  path: string;
  type: "char" | "block" | "fifo";
  /** Permission bits (0o7777), set exactly (not masked by the umask). */
  mode: number;
  major?: number;
  minor?: number;
}

/** Linux dev_t → (major, minor), as glibc's gnu_dev_major/minor. */
export function splitDev(rdev: bigint | number): { major: number; minor: number } {
  const d = BigInt(rdev);
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)),
    minor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)),
  };
}

const BATCH = 256;
// Five arguments per node: path, p|c|b, mode, major, minor.
const SCRIPT =
  'while [ $# -gt 0 ]; do if [ "$2" = p ]; then mknod -m "$3" -- "$1" p || exit 1; ' +
  'else mknod -m "$3" -- "$1" "$2" "$4" "$5" || exit 1; fi; shift 5; done';

/**
 * Create the nodes in order. `fail` turns mknod's complaint (which names the path) into the
 * caller's error.
 */
export async function makeNodes(
  nodes: readonly SpecialNode[],
  fail: (detail: string, cause?: unknown) => KilnError,
): Promise<void> {
  for (let i = 0; i < nodes.length; i += BATCH) {
    const args = nodes
      .slice(i, i + BATCH)
      .flatMap((n) => [
        n.path,
        n.type === "fifo" ? "p" : n.type === "char" ? "c" : "b",
        (n.mode & 0o7777).toString(8),
        String(n.major ?? 0),
        String(n.minor ?? 0),
      ]);
    const r = await run("sh", ["-c", SCRIPT, "sh", ...args]).catch((e: unknown) => {
      throw fail(messageOf(e), e);
    });
    if (r.exitCode !== 0) throw fail(r.stderr.trim() || `mknod exited ${r.exitCode}`);
  }
}
