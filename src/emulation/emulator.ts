/**
 * Deciding how a process of a given platform runs (BuildKit's getEmulator): natively, through
 * a kernel binfmt_misc handler, or wrapped by a QEMU user-mode emulator bind-mounted into the
 * container.
 */
import { access, constants } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { format, normalize, only, type Platform } from "../platform/index.js";
import { run } from "../process/index.js";
import { parseElfHeader, type ElfHeader } from "./elf.js";
import { parseShebang, readHead, resolveProgram } from "./rootfs.js";
import type { SupportedPlatforms } from "./supported.js";

/** Go architecture → QEMU's name for it; architectures not listed keep their Go name. */
export const QEMU_ARCH: Readonly<Record<string, string>> = {
  amd64: "x86_64",
  arm64: "aarch64",
  arm: "arm",
  riscv64: "riscv64",
  ppc64le: "ppc64le",
  s390x: "s390x",
  "386": "i386",
  mips64le: "mips64el",
  mips64: "mips64",
  loong64: "loongarch64",
};

export function qemuArch(architecture: string): string {
  return QEMU_ARCH[architecture] ?? architecture;
}

export interface Emulator {
  /** Absolute path on the host. */
  path: string;
  /** QEMU architecture name (`aarch64`). */
  arch: string;
  /** QEMU version (`7.2.19`), when `--version` answered. */
  version?: string;
  /**
   * BuildKit's `buildkit-qemu-*` build: re-enters itself on execve, so child processes of the
   * same architecture stay emulated without binfmt_misc.
   */
  patched: boolean;
}

/** The start of a file, parsed as ELF; undefined if unreadable or not ELF. */
export async function readElfHead(file: string): Promise<ElfHeader | undefined> {
  const head = await readHead(file);
  return head === undefined ? undefined : parseElfHeader(head);
}

/** `qemu-aarch64 version 7.2.19 (Debian …)` → `7.2.19`. */
export function parseQemuVersion(output: string): string | undefined {
  return /\bversion\s+(\d+\.\d+(?:\.\d+)?)/i.exec(output)?.[1];
}

export interface FindEmulatorOptions {
  /** Directories searched before PATH. */
  searchDirs?: string[];
  /** Colon-separated search path (default: $PATH). */
  path?: string;
}

/**
 * The emulator for `platform`: `buildkit-qemu-<arch>`, then `qemu-<arch>-static`, then
 * `qemu-<arch>`, each looked up in `searchDirs` then PATH. It runs inside the container's
 * root, so only statically linked binaries qualify.
 */
export async function findEmulator(
  platform: Platform,
  opts: FindEmulatorOptions = {},
): Promise<Emulator | undefined> {
  const arch = qemuArch(normalize(platform).architecture);
  const pathDirs = (opts.path ?? process.env["PATH"] ?? "").split(":").filter((d) => d !== "");
  const dirs = [...(opts.searchDirs ?? []), ...pathDirs];
  for (const name of [`buildkit-qemu-${arch}`, `qemu-${arch}-static`, `qemu-${arch}`]) {
    for (const dir of dirs) {
      const file = path.resolve(dir, name);
      const executable = await access(file, constants.X_OK).then(
        () => true,
        () => false,
      );
      if (!executable) continue;
      const elf = await readElfHead(file);
      if (elf === undefined || elf.interpreter !== undefined) continue;
      const emulator: Emulator = { path: file, arch, patched: name.startsWith("buildkit-") };
      const r = await run(file, ["--version"], { timeoutMs: 5000 }).catch(() => undefined);
      const version = r && parseQemuVersion(r.stdout.toString("utf8"));
      if (version !== undefined) emulator.version = version;
      return emulator;
    }
  }
  return undefined;
}

export interface ExecutionPlan {
  mode: "native" | "binfmt" | "wrapper";
  emulator?: Emulator;
}

/**
 * How to run a process of `platform`. Like BuildKit, any supported platform whose `only()`
 * matcher accepts the target means "no emulator" — except when the target's own probe ran
 * and failed (e.g. linux/386 on an amd64 kernel built without IA32 emulation), where trusting
 * `only()` would end in "exec format error".
 */
export async function planExecution(
  platform: Platform,
  supported: SupportedPlatforms,
  opts: FindEmulatorOptions = {},
): Promise<ExecutionPlan> {
  const target = normalize(platform);
  const probeFailed = supported.failures.some((f) => f.architecture === target.architecture);
  if (!probeFailed) {
    const runners = supported.supported.filter((p) => only(p).match(target));
    // amd64/v2 on an amd64 host, or arm/v7 on an arm64 one, is still the CPU itself.
    const nativeArch = supported.native.architecture;
    if (runners.some((p) => p.architecture === nativeArch) || only(supported.native).match(target))
      return { mode: "native" };
    if (runners.length > 0) return { mode: "binfmt" };
  }

  const list = supported.supported.map(format).join(", ");
  if (target.architecture === "amd64" && !["", "v1", "v2"].includes(target.variant ?? "")) {
    throw new KilnError(
      "E_PLATFORM_UNSUPPORTED",
      `no support for running processes with ${format(target)} platform, supported: ${list}`,
      {
        hint: "QEMU emulates x86-64 only up to v2: build this platform on a host whose CPU supports it, or target linux/amd64 or linux/amd64/v2",
      },
    );
  }

  const emulator = await findEmulator(target, opts);
  if (emulator !== undefined) return { mode: "wrapper", emulator };

  const arch = qemuArch(target.architecture);
  const where = opts.searchDirs?.length ? `${opts.searchDirs.join(", ")} or PATH` : "PATH";
  throw new KilnError(
    "E_NO_EMULATOR",
    `cannot run ${format(target)} programs on this ${format(supported.native)} host: the kernel has no binfmt_misc handler for them and no emulator (buildkit-qemu-${arch}, qemu-${arch}-static) is in ${where}. Supported: ${list}`,
    {
      hint: `install QEMU user-mode emulation with \`apt-get install qemu-user-static\`, or register an installed emulator with \`kiln binfmt --install ${target.architecture}\``,
    },
  );
}

/**
 * Where the emulator is bind-mounted (read-only) inside the container: in the /dev tmpfs, so
 * it never lands in the rootfs or a layer.
 */
export const EMULATOR_MOUNT_PATH = "/dev/.kiln-qemu";

/**
 * Runs `argv` under the emulator once `programPath` is known: an unpatched QEMU neither
 * searches PATH nor keeps argv[0], so it gets the program's path and `-0 argv[0]`.
 */
export function wrapArgv(argv: readonly string[], programPath: string): string[] {
  return [EMULATOR_MOUNT_PATH, "-0", argv[0] ?? programPath, programPath, ...argv.slice(1)];
}

/**
 * The argv that runs `argv` in a container on `rootfs` under the emulator at
 * EMULATOR_MOUNT_PATH. Stock QEMU (7.2 here) neither searches PATH nor runs `#!` scripts, so
 * both are done here, inside the rootfs, with one level of `#!` handled like the kernel.
 * Programs the emulated process execs itself go through the kernel as usual.
 */
export async function emulatedArgs(
  rootfs: string,
  argv: readonly string[],
  opts: { pathEnv?: string; cwd: string },
): Promise<string[]> {
  const [argv0, ...rest] = argv;
  if (argv0 === undefined) {
    throw new KilnError("E_EXEC_ARGS", "cannot run an empty command");
  }
  const found = await resolveProgram(rootfs, argv0, opts.pathEnv, opts.cwd);
  // A name with a slash is used as given (QEMU reports it if it cannot run it), like execvp.
  if (found === undefined && !argv0.includes("/")) {
    throw new KilnError("E_EXEC_NOT_FOUND", `"${argv0}": executable file not found in $PATH`, {
      hint: "Install the program in an earlier step or use its absolute path.",
    });
  }
  const program = argv0.includes("/") ? argv0 : found!.containerPath;
  const head = found && (await readHead(found.hostPath, 256));
  const shebang = head && parseShebang(head);
  if (shebang === undefined) return wrapArgv([argv0, ...rest], program);
  const extra = shebang.arg === undefined ? [] : [shebang.arg];
  return wrapArgv([shebang.interpreter, ...extra, program, ...rest], shebang.interpreter);
}
