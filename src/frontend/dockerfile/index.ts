// Parsing layers of the Dockerfile frontend: text → nodes → typed stages and commands, plus
// BuildKit-identical shell-word expansion. The Dockerfile → graph converter builds on these.
export { parseDockerfile, INSTRUCTIONS } from "./instructions.js";
export type {
  AddCommand,
  ArgCommand,
  ArgDefinition,
  CmdCommand,
  Command,
  CommandBase,
  CommandKind,
  CopyCommand,
  Dockerfile,
  EntrypointCommand,
  EnvCommand,
  ExposeCommand,
  HealthConfig,
  HealthcheckCommand,
  KeyValuePair,
  LabelCommand,
  MaintainerCommand,
  NetworkMode,
  OnbuildCommand,
  ParseOptions,
  RunCommand,
  SecurityMode,
  ShellCommand,
  ShellDependentCmdLine,
  ShellInlineFile,
  SourceContent,
  SourceLocation,
  Stage,
  StopSignalCommand,
  UserCommand,
  VolumeCommand,
  WorkdirCommand,
} from "./instructions.js";
export { parseNodes, parseHeredocWord, chompHeredocContent } from "./parser.js";
export type {
  Directive,
  EscapeToken,
  Heredoc,
  InstructionNode,
  ParseWarning,
  ParsedDockerfile,
} from "./parser.js";
export { ShellLex } from "./shell.js";
export type { EnvSource, ProcessWordResult, ShellLexOptions } from "./shell.js";
export { parseRunMount, checkRunMount, mountDefaults, parseRunDevice } from "./mounts.js";
export type { MountDefaults, MountSharing, MountType, RunDevice, RunMount } from "./mounts.js";
export { DockerfileError, DockerfileErrorCode, UnplacedError, placeError } from "./errors.js";
export type { SourceText } from "./errors.js";
export { parseGoDuration } from "./values.js";
