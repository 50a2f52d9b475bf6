import { readFile } from "node:fs/promises";

export interface MountInfo {
  mountId: number;
  parentId: number;
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Undo the kernel's octal escaping of space, tab, newline and backslash in mountinfo fields. */
function unescapeField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse /proc/<pid>/mountinfo (proc(5)); malformed lines are skipped. */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep < 6 || fields.length < sep + 4) continue;
    out.push({
      mountId: Number(fields[0]),
      parentId: Number(fields[1]),
      mountPoint: unescapeField(fields[4]!),
      fsType: fields[sep + 1]!,
      source: unescapeField(fields[sep + 2]!),
      superOptions: fields[sep + 3]!,
    });
  }
  return out;
}

/** Mount points at or below dir, deepest first (the order they must be unmounted in). */
export function mountsUnder(mounts: readonly MountInfo[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const points = mounts.map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export async function readMountInfo(): Promise<MountInfo[]> {
  return parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
}
