/**
 * Turning "exec format error" into an explanation: which binary, built for what, what this
 * host can run, how kiln tried to run it, and the command that fixes it.
 */
import { format, normalize, only, type Platform } from "../platform/index.js";
import { parseElfHeader } from "./elf.js";
import type { Emulator, ExecutionPlan } from "./emulator.js";
import { parseShebang, resolveProgram, readHead } from "./rootfs.js";
import type { SupportedPlatforms } from "./supported.js";

/** Whether a process's error output says the kernel refused the executable (ENOEXEC). */
export function isExecFormatError(stderr: string): boolean {
  return /exec format error/i.test(stderr);
}

/**
 * The program named in an exec-format-error message: runc's `exec /bin/sh: exec format
 * error` / `exec: "/bin/sh": …`, or a shell's `./tool: cannot execute binary file: Exec format
 * error`. Undefined when the message names none (e.g. `exec user process caused: …`).
 */
export function failedProgramFrom(stderr: string): string | undefined {
  const runc = /\bexec:? "?([^\s"]+?)"?: exec format error/i.exec(stderr);
  if (runc !== undefined && runc !== null) return runc[1];
  const shell =
    /(?:^|[\s:])(?!caused:)([^\s:]+): (?:cannot execute binary file: )?exec format error/im.exec(
      stderr,
    );
  return shell?.[1];
}

export interface ExecFailureInfo {
  /** The platform the process was started for. */
  platform: Platform;
  /** The program the step ran (argv[0]). */
  argv0: string;
  mode: ExecutionPlan["mode"];
  emulator?: Emulator;
  supported: SupportedPlatforms;
  exitCode?: number;
  stderr?: string;
  /** The container's root filesystem on the host, to inspect the binary. */
  rootfs?: string;
  /** The container's PATH (default: the usual Linux one). */
  pathEnv?: string;
}

export interface Explanation {
  message: string;
  hint: string;
}

/** What was found at the failing path. */
type Inspection =
  | { kind: "elf"; architecture: string | undefined; machine: number; via?: string }
  | { kind: "script-without-interpreter"; interpreter: string }
  | { kind: "not-elf" }
  | { kind: "unreadable" };

async function inspect(rootfs: string, program: string, pathEnv?: string): Promise<Inspection> {
  const resolved = await resolveProgram(rootfs, program, pathEnv);
  const head = resolved && (await readHead(resolved.hostPath, 4096));
  if (head === undefined) return { kind: "unreadable" };
  const shebang = parseShebang(head);
  if (shebang) {
    const { interpreter } = shebang;
    const inner = await resolveProgram(rootfs, interpreter, pathEnv);
    const innerHead = inner && (await readHead(inner.hostPath, 4096));
    const elf = innerHead && parseElfHeader(innerHead);
    if (elf === undefined) return { kind: "script-without-interpreter", interpreter };
    return { kind: "elf", architecture: elf.architecture, machine: elf.machine, via: interpreter };
  }
  const elf = parseElfHeader(head);
  if (elf === undefined) return { kind: "not-elf" };
  return { kind: "elf", architecture: elf.architecture, machine: elf.machine };
}

export async function explainExecFailure(info: ExecFailureInfo): Promise<Explanation> {
  const target = normalize(info.platform);
  const targetName = format(target);
  const program = (info.stderr && failedProgramFrom(info.stderr)) || info.argv0;
  const runnable = info.supported.supported.map(format).join(", ");
  const hostLine = `This ${format(info.supported.native)} host runs: ${runnable}.`;
  const found: Inspection =
    info.rootfs === undefined
      ? { kind: "unreadable" }
      : await inspect(info.rootfs, program, info.pathEnv);

  const head = `exec format error: cannot run ${program} for ${targetName}`;
  const runsOnHost = (arch: string) =>
    info.supported.supported.some((p) => only(p).match({ os: "linux", architecture: arch }));

  if (found.kind === "not-elf") {
    return {
      message: `${head}: it is neither an ELF executable nor a script starting with #!. ${hostLine}`,
      hint: `add a #! line (e.g. #!/bin/sh) to ${program}, or check that it is the file you meant to run`,
    };
  }
  if (found.kind === "script-without-interpreter") {
    return {
      message: `${head}: it is a script whose interpreter ${found.interpreter} is missing or not an executable in the image. ${hostLine}`,
      hint: `install ${found.interpreter} in the image or fix the #! line of ${program}`,
    };
  }

  const binary =
    found.kind === "elf" ? (found.architecture ?? `ELF machine ${found.machine}`) : undefined;
  const subject =
    found.kind === "elf" && found.via !== undefined
      ? `${program} (interpreter ${found.via}, built for ${binary})`
      : binary !== undefined
        ? `${program} (built for ${binary})`
        : program;

  // The binary is for another architecture than the image: a build mistake, not emulation.
  if (found.kind === "elf" && found.architecture !== target.architecture) {
    const other = found.architecture;
    const compatible =
      other !== undefined && only(target).match({ os: "linux", architecture: other });
    if (!compatible) {
      const install =
        other !== undefined && !runsOnHost(other)
          ? ` To run it anyway, register an emulator for it: \`kiln binfmt --install ${other}\`.`
          : "";
      return {
        message: `${head}: ${subject} does not match the image. ${hostLine}`,
        hint: `this binary is built for ${binary} but the image is ${targetName}: the image was built with the wrong base or a binary was copied from another stage's platform (check FROM --platform and COPY --from).${install}`,
      };
    }
  }

  const arch = target.architecture;
  const fix = `\`kiln binfmt --install ${arch}\``;
  switch (info.mode) {
    case "wrapper": {
      const emu = info.emulator;
      const how =
        emu === undefined
          ? "through an emulator, but none was given"
          : `through the emulator ${emu.path}${emu.version ? ` (QEMU ${emu.version})` : ""}, which covers the first process${emu.patched ? " and its children of the same architecture" : " only: this unpatched QEMU cannot follow execve"}`;
      return {
        message: `${head}: ${subject} was started without an emulator. kiln runs ${targetName} ${how}; programs it executes need the kernel's binfmt_misc. ${hostLine}`,
        hint: `register QEMU with the kernel: ${fix} (or \`apt-get install qemu-user-static\`, which registers all of them)`,
      };
    }
    case "binfmt": {
      const handler = info.supported.binfmt.find((h) => h.architecture === arch);
      const why =
        handler === undefined
          ? "no binfmt_misc handler for it is registered any more"
          : !handler.enabled
            ? `the binfmt_misc handler ${handler.name} is disabled`
            : !handler.flags.includes("F")
              ? `the binfmt_misc handler ${handler.name} lacks the F flag, so its interpreter ${handler.interpreter ?? ""} is not found inside the container`
              : `the binfmt_misc handler ${handler.name} (${handler.interpreter ?? "?"}) did not accept it`;
      const reinstall =
        handler !== undefined && !handler.flags.includes("F")
          ? `re-register it with the F flag: \`kiln binfmt --uninstall ${arch}\` then ${fix}`
          : `register QEMU again: ${fix}`;
      return { message: `${head}: ${subject}: ${why}. ${hostLine}`, hint: reinstall };
    }
    case "native":
      return {
        message: `${head}: ${subject}: this ${format(info.supported.native)} kernel cannot execute ${targetName} programs natively (e.g. 32-bit support is missing). ${hostLine}`,
        hint: `emulate it instead: ${fix}, or \`apt-get install qemu-user-static\``,
      };
  }
}
