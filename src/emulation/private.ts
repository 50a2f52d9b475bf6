/**
 * A container's own binfmt_misc instance, so programs that an emulated process executes are
 * emulated too without any handler registered on the host.
 *
 * Stock QEMU (Debian's 7.2, unlike BuildKit's patched build) runs only the program it was
 * started with: every execve inside goes through the kernel, which without a binfmt_misc
 * handler answers "exec format error". Since Linux 6.7 each user namespace may mount its own
 * binfmt_misc instance, and the kernel consults only the nearest one up the namespace tree.
 * So a wrapper-mode container gets a user namespace, and a createContainer hook (which runc
 * 1.1 runs inside the container's user and mount namespaces, as root with all capabilities,
 * before pivot_root, so host paths still resolve) mounts an instance at the container's
 * /proc/sys/fs/binfmt_misc and registers exactly one handler: the target architecture → the
 * emulator, with F so the interpreter is opened right then. The host's binfmt state is never
 * read or changed, and it disappears with the container. The user namespace maps every id to
 * itself, so file ownership and setuid behave as before; what it costs is mknod of device
 * nodes (EPERM, as in rootless BuildKit) in emulated steps. Native and binfmt steps keep no
 * user namespace.
 *
 * Ruled out: a static helper as the container's first process would run after runc switched
 * to the step's USER and dropped CAP_SYS_ADMIN; runc will not mount binfmt_misc itself (it
 * refuses mount targets inside /proc); running runc inside an outer user namespace needs an
 * id map written from outside, and with the full identity map runc believes it is not in one
 * and fails writing cgroup device rules.
 */
import path from "node:path";
import { run } from "../process/index.js";
import { BINFMT_ARCHES, registerLine } from "./binfmt.js";
import { parseQemuVersion } from "./emulator.js";

let supported: Promise<boolean> | undefined;
const registrations = new Map<string, Promise<string | undefined>>();

/**
 * Whether this kernel gives a user namespace its own binfmt_misc instance (Linux ≥ 6.7), tried
 * once per process in a throw-away user and mount namespace.
 */
export function privateBinfmtSupported(): Promise<boolean> {
  supported ??= run(
    "unshare",
    [
      "--user",
      "--map-root-user",
      "--mount",
      "mount",
      "-t",
      "binfmt_misc",
      "binfmt_misc",
      "/proc/sys/fs/binfmt_misc",
    ],
    { timeoutMs: 10_000 },
  ).then(
    (r) => r.exitCode === 0,
    () => false,
  );
  return supported;
}

/** `qemu-aarch64-static` → `aarch64`; BuildKit's patched `buildkit-qemu-*` → undefined. */
function stockQemuArch(emulatorPath: string): string | undefined {
  return /^qemu-([a-z0-9_]+?)(?:-static)?$/.exec(path.basename(emulatorPath))?.[1];
}

/**
 * QEMU learns from the kernel that binfmt_misc kept argv[0] (the P flag) through
 * AT_FLAGS_PRESERVE_ARGV0, read since QEMU 6.0; older ones would take argv[0] for the program.
 */
function readsPreserveArgv0(version: string | undefined): boolean {
  const major = Number(version?.split(".")[0]);
  return major >= 6;
}

/**
 * The `register` line for a wrapper-mode container's own binfmt_misc instance, or undefined
 * when there is none to make: the kernel has no per-namespace instances, the emulator is
 * BuildKit's (it re-executes itself on execve, so needs no handler), or its file name does
 * not say which architecture it emulates (findEmulator only returns names that do).
 */
export function privateBinfmtRegistration(emulatorPath: string): Promise<string | undefined> {
  let line = registrations.get(emulatorPath);
  if (line === undefined) {
    line = registration(emulatorPath);
    registrations.set(emulatorPath, line);
  }
  return line;
}

async function registration(emulatorPath: string): Promise<string | undefined> {
  const qemu = stockQemuArch(emulatorPath);
  const arch = BINFMT_ARCHES.find((a) => a.qemuArch === qemu);
  if (arch === undefined || !(await privateBinfmtSupported())) return undefined;
  const r = await run(emulatorPath, ["--version"], { timeoutMs: 5000 }).catch(() => undefined);
  const version = r && parseQemuVersion(r.stdout.toString("utf8"));
  // C and F as `kiln binfmt --install`; P keeps argv[0], which busybox needs to pick its applet.
  return registerLine(arch, emulatorPath, readsPreserveArgv0(version) ? "CFP" : "CF");
}
