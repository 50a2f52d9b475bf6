/**
 * binfmt_misc management (what tonistiigi/binfmt does): register QEMU user-mode emulators with
 * the kernel so foreign executables run transparently, list them, and remove them.
 */
import { access, constants, open, stat, utimes } from "node:fs/promises";
import path from "node:path";
import { KilnError, messageOf } from "../errors.js";
import { defaultPlatform, format } from "../platform/index.js";
import { run } from "../process/index.js";
import { readElfHead } from "./emulator.js";
import { DEFAULT_BINFMT_MOUNT, readBinfmtHandlers } from "./handlers.js";
import { probeSupported } from "./supported.js";

export interface BinfmtArch {
  /** Go architecture name (`arm64`). */
  architecture: string;
  /** QEMU's name for it (`aarch64`); the entry is `qemu-<qemuArch>`. */
  qemuArch: string;
  /** Hex bytes matched at offset 0 of an executable. */
  magic: string;
  mask: string;
}

/**
 * The ELF identification each emulator claims: class, byte order, version, e_type (mask
 * 0xfe also accepts ET_DYN, i.e. PIE) and e_machine. Same values as tonistiigi/binfmt.
 */
export const BINFMT_ARCHES: readonly BinfmtArch[] = [
  {
    architecture: "amd64",
    qemuArch: "x86_64",
    magic: "7f454c4602010100000000000000000002003e00",
    mask: "fffffffffffefe00fffffffffffffffffeffffff",
  },
  {
    architecture: "arm64",
    qemuArch: "aarch64",
    magic: "7f454c460201010000000000000000000200b700",
    mask: "ffffffffffffff00fffffffffffffffffeffffff",
  },
  {
    architecture: "arm",
    qemuArch: "arm",
    magic: "7f454c4601010100000000000000000002002800",
    mask: "ffffffffffffff00fffffffffffffffffeffffff",
  },
  {
    architecture: "riscv64",
    qemuArch: "riscv64",
    magic: "7f454c460201010000000000000000000200f300",
    mask: "ffffffffffffff00fffffffffffffffffeffffff",
  },
  {
    architecture: "ppc64le",
    qemuArch: "ppc64le",
    magic: "7f454c4602010100000000000000000002001500",
    mask: "ffffffffffffff00fffffffffffffffffeffff00",
  },
  {
    architecture: "s390x",
    qemuArch: "s390x",
    magic: "7f454c4602020100000000000000000000020016",
    mask: "ffffffffffffff00fffffffffffffffffffeffff",
  },
  {
    architecture: "386",
    qemuArch: "i386",
    magic: "7f454c4601010100000000000000000002000300",
    mask: "fffffffffffefe00fffffffffffffffffeffffff",
  },
  {
    architecture: "mips64le",
    qemuArch: "mips64el",
    magic: "7f454c4602010100000000000000000002000800",
    mask: "ffffffffffffff0000fffffffffffffffeffffff",
  },
  {
    architecture: "mips64",
    qemuArch: "mips64",
    magic: "7f454c4602020100000000000000000000020008",
    mask: "ffffffffffffff0000fffffffffffffffffeffff",
  },
  {
    architecture: "loong64",
    qemuArch: "loongarch64",
    magic: "7f454c4602010100000000000000000002000201",
    mask: "fffffffffffffffc00fffffffffffffffeffffff",
  },
];

/** Looks an architecture up by Go name (`arm64`), QEMU name (`aarch64`) or `linux/arm64`. */
export function binfmtArch(name: string): BinfmtArch {
  const bare = name.replace(/^linux\//, "").replace(/\/v\d+$/, "");
  const found = BINFMT_ARCHES.find((a) => a.architecture === bare || a.qemuArch === bare);
  if (found === undefined) {
    throw new KilnError("E_BINFMT_ARCH", `unknown emulator architecture "${name}"`, {
      hint: `choose from: ${BINFMT_ARCHES.map((a) => a.architecture).join(", ")}, or "all"`,
    });
  }
  return found;
}

const escape = (hex: string) => hex.replace(/(..)/g, "\\x$1");

/** The line written to `register`: `:qemu-<arch>:M:0:<magic>:<mask>:<interpreter>:<flags>`. */
export function registerLine(arch: BinfmtArch, interpreter: string, flags: string): string {
  return `:qemu-${arch.qemuArch}:M:0:${escape(arch.magic)}:${escape(arch.mask)}:${interpreter}:${flags}`;
}

export interface BinfmtStatus {
  /** Platforms the kernel runs (probed now), formatted: `linux/amd64`, `linux/arm64`, … */
  supported: string[];
  /** Names of the registered binfmt_misc entries. */
  emulators: string[];
}

export async function binfmtStatus(
  mountPoint: string = DEFAULT_BINFMT_MOUNT,
): Promise<BinfmtStatus> {
  const probed = await probeSupported({ cacheMaxAgeMs: 0, mountPoint });
  const handlers = readBinfmtHandlers(mountPoint);
  return { supported: probed.supported.map(format), emulators: handlers.map((h) => h.name) };
}

export interface BinfmtChange {
  architecture: string;
  /** binfmt_misc entry name. */
  name: string;
  result: "installed" | "already-registered" | "skipped-native" | "removed" | "not-registered";
  interpreter?: string;
}

export interface InstallOptions {
  mountPoint?: string;
  /** Directory holding the QEMU binaries (default /usr/bin). */
  qemuPath?: string;
  /** `CF` (default) or `CFP` to also preserve argv[0]. */
  flags?: "CF" | "CFP";
}

/**
 * Registers QEMU for `arches` ("all" = every known architecture the kernel cannot run yet
 * whose QEMU binary is installed). Idempotent: an existing entry counts as registered.
 */
export async function installBinfmt(
  arches: readonly string[] | "all",
  opts: InstallOptions = {},
): Promise<BinfmtChange[]> {
  const mountPoint = opts.mountPoint ?? DEFAULT_BINFMT_MOUNT;
  const qemuPath = opts.qemuPath ?? "/usr/bin";
  requireRoot("register emulators");
  await ensureMounted(mountPoint);
  const native = defaultPlatform().architecture;

  let targets: BinfmtArch[];
  if (arches === "all") {
    const probed = await probeSupported({ cacheMaxAgeMs: 0, mountPoint });
    const runnable = new Set(probed.supported.map((p) => p.architecture));
    const candidates = BINFMT_ARCHES.filter((a) => !runnable.has(a.architecture));
    const found = await Promise.all(candidates.map((a) => findInterpreter(qemuPath, a)));
    targets = candidates.filter((_, i) => found[i] !== undefined);
  } else {
    targets = arches.map(binfmtArch);
  }

  // Some kernels only show new entries after the mount point changed (amazon-linux-2023#479).
  const now = new Date();
  await utimes(mountPoint, now, now).catch(() => undefined);

  const changes: BinfmtChange[] = [];
  for (const arch of targets) {
    const name = `qemu-${arch.qemuArch}`;
    if (arch.architecture === native) {
      changes.push({ architecture: arch.architecture, name, result: "skipped-native" });
      continue;
    }
    const interpreter = await findInterpreter(qemuPath, arch);
    if (interpreter === undefined) {
      throw new KilnError(
        "E_QEMU_MISSING",
        `no static QEMU emulator for ${arch.architecture} in ${qemuPath} (looked for qemu-${arch.qemuArch}-static and qemu-${arch.qemuArch})`,
        { hint: "install the emulators with `apt-get install qemu-user-static`" },
      );
    }
    const result = await writeControl(
      path.join(mountPoint, "register"),
      registerLine(arch, interpreter, opts.flags ?? "CF"),
      { EEXIST: "already-registered" },
    );
    changes.push({
      architecture: arch.architecture,
      name,
      result: result ?? "installed",
      interpreter,
    });
  }
  return changes;
}

/** Removes the `qemu-<arch>` entries ("all" = every one kiln knows). Idempotent. */
export async function uninstallBinfmt(
  arches: readonly string[] | "all",
  opts: { mountPoint?: string } = {},
): Promise<BinfmtChange[]> {
  const mountPoint = opts.mountPoint ?? DEFAULT_BINFMT_MOUNT;
  requireRoot("remove emulators");
  const targets = arches === "all" ? BINFMT_ARCHES : arches.map(binfmtArch);
  const changes: BinfmtChange[] = [];
  for (const arch of targets) {
    const name = `qemu-${arch.qemuArch}`;
    const entry = path.join(mountPoint, name);
    const exists = await stat(entry).then(
      () => true,
      () => false,
    );
    if (!exists) {
      if (arches !== "all")
        changes.push({ architecture: arch.architecture, name, result: "not-registered" });
      continue;
    }
    const result = await writeControl(entry, "-1", { ENOENT: "not-registered" });
    changes.push({ architecture: arch.architecture, name, result: result ?? "removed" });
  }
  return changes;
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new KilnError("E_PERMISSION", `binfmt_misc is owned by root: cannot ${what}`, {
      hint: "run the command as root, e.g. `sudo kiln binfmt --install arm64`",
    });
  }
}

async function ensureMounted(mountPoint: string): Promise<void> {
  const mounted = await stat(path.join(mountPoint, "status")).then(
    () => true,
    () => false,
  );
  if (mounted) return;
  let failure: string | undefined;
  try {
    const r = await run("mount", ["-t", "binfmt_misc", "binfmt_misc", mountPoint], {
      timeoutMs: 10_000,
    });
    if (r.exitCode !== 0) failure = r.stderr.trim() || `mount exited ${r.exitCode}`;
  } catch (e) {
    failure = messageOf(e);
  }
  if (failure !== undefined) {
    throw new KilnError("E_BINFMT_MOUNT", `cannot mount binfmt_misc at ${mountPoint}: ${failure}`, {
      hint: "load the module (`modprobe binfmt_misc`) and mount it: `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`",
    });
  }
}

/** The static QEMU for `arch` in `dir`: `qemu-<arch>-static`, else `qemu-<arch>` if static. */
async function findInterpreter(dir: string, arch: BinfmtArch): Promise<string | undefined> {
  for (const name of [`qemu-${arch.qemuArch}-static`, `qemu-${arch.qemuArch}`]) {
    const file = path.join(dir, name);
    const ok = await access(file, constants.X_OK).then(
      () => true,
      () => false,
    );
    // With the F flag the kernel opens the interpreter once, but a dynamic one would still
    // need its loader and libraries inside every container's root.
    if (ok && (await readElfHead(file))?.interpreter === undefined) return file;
  }
  return undefined;
}

/** One write(2) to a binfmt_misc control file; listed errno codes map to results. */
async function writeControl<R extends string>(
  file: string,
  text: string,
  expected: Partial<Record<string, R>>,
): Promise<R | undefined> {
  try {
    const fh = await open(file, constants.O_WRONLY);
    try {
      await fh.write(text);
    } finally {
      await fh.close();
    }
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    const mapped = expected[code];
    if (mapped !== undefined) return mapped;
    throw new KilnError("E_BINFMT_WRITE", `cannot write ${file}: ${messageOf(e)}`, {
      cause: e,
      hint:
        code === "EACCES" || code === "EPERM"
          ? "binfmt_misc changes need root in the initial user namespace (or a binfmt_misc mounted in your own user namespace)"
          : "check `dmesg` for binfmt_misc messages",
    });
  }
}
