export { buildElf, parseElfHeader, elfArchitecture, type ElfHeader, type ElfSpec } from "./elf.js";
export { probeBinary, PROBE_ARCHITECTURES, AMD64_LEVEL_EXIT_BASE } from "./probes.js";
export { amd64LevelFromCpuinfo } from "./cpu.js";
export {
  probeSupported,
  type SupportedPlatforms,
  type ProbeOptions,
  type ProbeFailure,
} from "./supported.js";
export {
  readBinfmtHandlers,
  parseBinfmtEntry,
  magicMatches,
  DEFAULT_BINFMT_MOUNT,
  type BinfmtHandler,
} from "./handlers.js";
export {
  QEMU_ARCH,
  qemuArch,
  findEmulator,
  parseQemuVersion,
  readElfHead,
  planExecution,
  wrapArgv,
  emulatedArgs,
  EMULATOR_MOUNT_PATH,
  type Emulator,
  type ExecutionPlan,
  type FindEmulatorOptions,
} from "./emulator.js";
export {
  BINFMT_ARCHES,
  binfmtArch,
  registerLine,
  binfmtStatus,
  installBinfmt,
  uninstallBinfmt,
  type BinfmtArch,
  type BinfmtStatus,
  type BinfmtChange,
  type InstallOptions,
} from "./binfmt.js";
export {
  explainExecFailure,
  isExecFormatError,
  failedProgramFrom,
  type ExecFailureInfo,
  type Explanation,
} from "./explain.js";
export { privateBinfmtSupported, privateBinfmtRegistration } from "./private.js";
export {
  resolveProgram,
  parseShebang,
  DEFAULT_CONTAINER_PATH,
  type ResolvedProgram,
} from "./rootfs.js";
