import { readFile } from "node:fs/promises";

/**
 * Owner tags mark on-disk state (workspaces, containers, bundles) with the process that made
 * it: "<pid>-<start time>". The start time tells a live owner from a reused pid, so stale-state
 * sweeps remove only what a dead kiln left, never a concurrent kiln's work.
 */

/**
 * Field 22 of /proc/<pid>/stat: the process start time in clock ticks since boot; undefined
 * when the process is gone or a zombie (killed, not yet reaped: it will never act again).
 */
async function startTimeOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

let own: Promise<string> | undefined;

/** This process's owner tag. */
export function ownerTag(): Promise<string> {
  own ??= startTimeOf(process.pid).then((t) => `${process.pid}-${t ?? "0"}`);
  return own;
}

/** Whether the process that wrote tag is still running (malformed tags count as dead). */
export async function isOwnerAlive(tag: string): Promise<boolean> {
  const m = /^(\d+)-(\d+)$/.exec(tag);
  if (!m) return false;
  return (await startTimeOf(Number(m[1]))) === m[2];
}
