import { constants } from "node:os";
import { MNT_DETACH, mountSyscall, unmountSyscall } from "../process/index.js";
import { KilnError } from "../errors.js";

/** mount(2) copies at most one page of options; keep a margin below 4096 for the NUL. */
export const MAX_OPTIONS_LENGTH = 4000;
/** The kernel's overlayfs stacking limit (OVL_MAX_STACK). */
export const MAX_LOWER_LAYERS = 500;

/**
 * Options that make the upperdir a faithful diff: no inode index, renamed directories are
 * copied up in full instead of leaving redirect xattrs, and no metadata-only copy-ups that
 * would leave files whose data lives in a lower layer.
 */
export const DIFF_SAFE_OPTIONS = ["index=off", "redirect_dir=off", "metacopy=off"] as const;

export interface OverlayDirs {
  /** Lower directories, TOP FIRST (overlayfs order). Relative paths resolve against the mount's cwd. */
  lowers: readonly string[];
  /** Omit both upper and work for a read-only overlay (needs at least two lowers). */
  upper?: string;
  work?: string;
}

/**
 * The -o string for an overlay mount; throws if it cannot be a valid mount. `volatile` (Linux
 * 5.10+, writable mounts only) drops the upper filesystem's syncs, among them the syncfs that
 * unmounting does: a snapshot reaches the disk through the snapshotter's own background flush.
 */
export function overlayOptions(dirs: OverlayDirs, opts: { volatile?: boolean } = {}): string {
  for (const d of [...dirs.lowers, dirs.upper ?? "", dirs.work ?? ""]) {
    if (/[:,\\]/.test(d)) {
      throw new KilnError(
        "E_SNAPSHOT_PATH",
        `overlay path ${JSON.stringify(d)} contains : , or \\`,
        {
          hint: "Use a snapshot root whose path has no ':', ',' or '\\' characters.",
        },
      );
    }
  }
  const parts = [`lowerdir=${dirs.lowers.join(":")}`];
  if (dirs.upper !== undefined) parts.push(`upperdir=${dirs.upper}`, `workdir=${dirs.work ?? ""}`);
  parts.push(...DIFF_SAFE_OPTIONS);
  if (opts.volatile && dirs.upper !== undefined) parts.push("volatile");
  return parts.join(",");
}

/** Whether this overlay can be mounted in one mount(2) call. */
export function overlayFits(dirs: OverlayDirs, limit = MAX_OPTIONS_LENGTH): boolean {
  return (
    dirs.lowers.length <= MAX_LOWER_LAYERS &&
    overlayOptions(dirs, { volatile: true }).length <= limit
  );
}

/** Whether this kernel takes `volatile` (known after the first writable mount). */
let volatileWorks: boolean | undefined;

/** Mount an overlay at target; relative dirs are resolved against cwd (keeps options short). */
export async function mountOverlay(dirs: OverlayDirs, target: string, cwd: string): Promise<void> {
  const mount = async (volatile: boolean): Promise<void> => {
    const data = overlayOptions(dirs, { volatile });
    const failed = await mountSyscall({ source: "overlay", target, fstype: "overlay", data, cwd });
    if (failed) {
      throw new KilnError(
        "E_SNAPSHOT_MOUNT",
        `cannot mount an overlay at ${target}: ${failed.message} (options ${data})`,
        {
          hint: "overlayfs mounts need root and a kernel with overlay support; kiln falls back to the copy driver when the startup probe fails.",
        },
      );
    }
  };
  if (dirs.upper === undefined || volatileWorks === false) return mount(false);
  if (volatileWorks === true) return mount(true);
  try {
    await mount(true);
    volatileWorks = true;
  } catch {
    // a kernel before 5.10: mount as before (a real failure fails again, with its own message)
    await mount(false);
    volatileWorks = false;
  }
}

/** Unmount target; if it is busy, detach it lazily so it disappears once the last user exits. */
export async function unmount(target: string): Promise<void> {
  const failed = await unmountSyscall(target);
  // EINVAL: not a mount point (any more); ENOENT: no such path
  const gone = [constants.errno.EINVAL, constants.errno.ENOENT];
  if (failed === undefined || gone.includes(failed.errno)) return;
  const detached = await unmountSyscall(target, MNT_DETACH);
  if (detached) {
    throw new KilnError("E_SNAPSHOT_UNMOUNT", `cannot unmount ${target}: ${detached.message}`, {
      hint: `Unmount ${target} by hand (umount -l) and retry.`,
    });
  }
}
