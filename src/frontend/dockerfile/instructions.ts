/**
 * Instruction nodes → typed commands and stages (BuildKit frontend/dockerfile/instructions):
 * flags declared per instruction, argument counts, stage names, heredoc sources, healthcheck
 * durations. Nothing is expanded here; each command keeps its words as written and says
 * whether BuildKit expands it (`expandable`), so the converter can expand per platform.
 */
import {
  DockerfileError,
  DockerfileErrorCode,
  UnplacedError,
  locate,
  placeError,
} from "./errors.js";
import type { SourceText } from "./errors.js";
import { parseFlags, type FlagKind, type ParsedFlags } from "./flags.js";
import { checkRunMount, parseRunDevice, type RunDevice } from "./mounts.js";
import {
  chompHeredocContent,
  parseHeredocWord,
  parseNodes,
  type Directive,
  type EscapeToken,
  type Heredoc,
  type InstructionNode,
  type ParseWarning,
} from "./parser.js";
import { suggest, trimGoSpace } from "./text.js";
import { parseGoDuration, parseGoInt32 } from "./values.js";

export interface SourceLocation {
  file: string;
  /** 1-based, inclusive; endLine includes heredoc bodies. */
  startLine: number;
  endLine: number;
}

export interface CommandBase {
  /** The keyword as written, e.g. "run" or "RUN". */
  keyword: string;
  /** The instruction's logical line (continuations joined, trimmed), for progress names. */
  code: string;
  location: SourceLocation;
  /**
   * Whether BuildKit expands variables in this command's words at build time (ADD COPY ENV
   * EXPOSE LABEL STOPSIGNAL USER VOLUME WORKDIR ARG, and RUN's --mount values).
   */
  expandable: boolean;
  /** Comment lines directly above (without '#'). */
  comments: string[];
}

export interface KeyValuePair {
  key: string;
  value: string;
  /** Written in the legacy `ENV key value` form. */
  legacy: boolean;
}

export interface ArgDefinition {
  key: string;
  /** undefined for `ARG name` (no default). */
  value?: string;
}

/** An inline file from a heredoc, for RUN/CMD/ENTRYPOINT. */
export interface ShellInlineFile {
  name: string;
  /** Body as written (not chomped). */
  data: string;
  chomp: boolean;
}

/** A heredoc used as a COPY/ADD source. */
export interface SourceContent {
  /** The heredoc's delimiter name, used as the file name. */
  path: string;
  /** Body, already chomped for <<-. */
  data: string;
  /** Expand variables in the body (delimiter was not quoted); quotes in the body stay. */
  expand: boolean;
}

export interface ShellDependentCmdLine {
  /** Exec form: the array; shell form: one string (the command text). */
  cmdLine: string[];
  /** Shell form: run through the stage's SHELL. */
  prependShell: boolean;
  files: ShellInlineFile[];
}

export type NetworkMode = "default" | "none" | "host";
export type SecurityMode = "sandbox" | "insecure";

export interface RunCommand extends CommandBase, ShellDependentCmdLine {
  kind: "run";
  /** Raw --mount values in order; type them with parseRunMount(value, expand). */
  mounts: string[];
  network: NetworkMode;
  security: SecurityMode;
  devices: RunDevice[];
  /** Flag names given on the instruction. */
  flagsUsed: string[];
}

export interface CmdCommand extends CommandBase, ShellDependentCmdLine {
  kind: "cmd";
}

export interface EntrypointCommand extends CommandBase, ShellDependentCmdLine {
  kind: "entrypoint";
}

interface SourcesAndDest {
  sources: string[];
  sourceContents: SourceContent[];
  dest: string;
}

export interface CopyCommand extends CommandBase, SourcesAndDest {
  kind: "copy";
  /** --from, not expandable (BuildKit rejects variables in it at conversion). */
  from: string;
  chown: string;
  chmod: string;
  link: boolean;
  parents: boolean;
  excludes: string[];
}

export interface AddCommand extends CommandBase, SourcesAndDest {
  kind: "add";
  chown: string;
  chmod: string;
  link: boolean;
  /** undefined when --keep-git-dir was not given. */
  keepGitDir?: boolean;
  checksum: string;
  /** undefined when --unpack was not given. */
  unpack?: boolean;
  excludes: string[];
}

export interface EnvCommand extends CommandBase {
  kind: "env";
  pairs: KeyValuePair[];
}

export interface LabelCommand extends CommandBase {
  kind: "label";
  pairs: KeyValuePair[];
}

export interface ArgCommand extends CommandBase {
  kind: "arg";
  args: ArgDefinition[];
}

export interface WorkdirCommand extends CommandBase {
  kind: "workdir";
  path: string;
}

export interface UserCommand extends CommandBase {
  kind: "user";
  user: string;
}

export interface ExposeCommand extends CommandBase {
  kind: "expose";
  /** As written, sorted like BuildKit; expand each with processWords. */
  ports: string[];
}

export interface VolumeCommand extends CommandBase {
  kind: "volume";
  volumes: string[];
}

export interface StopSignalCommand extends CommandBase {
  kind: "stopsignal";
  signal: string;
}

export interface HealthConfig {
  /** ["NONE"], ["CMD", ...argv] or ["CMD-SHELL", command]. */
  test: string[];
  /** Nanoseconds; 0 = not set (image default). */
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

export interface HealthcheckCommand extends CommandBase {
  kind: "healthcheck";
  health: HealthConfig;
}

export interface ShellCommand extends CommandBase {
  kind: "shell";
  shell: string[];
}

export interface MaintainerCommand extends CommandBase {
  kind: "maintainer";
  maintainer: string;
}

export interface OnbuildCommand extends CommandBase {
  kind: "onbuild";
  /** The trigger text stored in the image config (heredoc bodies appended), as BuildKit does. */
  expression: string;
  /**
   * The trigger typed. undefined when it does not parse: BuildKit only parses a trigger when a
   * child image runs it, so such a Dockerfile still builds.
   */
  trigger?: Command;
}

export type Command =
  | RunCommand
  | CmdCommand
  | EntrypointCommand
  | CopyCommand
  | AddCommand
  | EnvCommand
  | LabelCommand
  | ArgCommand
  | WorkdirCommand
  | UserCommand
  | ExposeCommand
  | VolumeCommand
  | StopSignalCommand
  | HealthcheckCommand
  | ShellCommand
  | MaintainerCommand
  | OnbuildCommand;

export type CommandKind = Command["kind"];

export interface Stage {
  /** Lower-cased `AS name`, undefined when unnamed. */
  name?: string;
  /** FROM, AS and the name as written (for the casing checks). */
  keyword: string;
  asKeyword?: string;
  nameAsWritten?: string;
  /** The image or stage reference as written (expand with the global ARGs). */
  baseName: string;
  /** --platform as written (expand with the global ARGs plus BUILDPLATFORM etc.). */
  platform?: string;
  commands: Command[];
  /** The FROM line. */
  code: string;
  location: SourceLocation;
  comments: string[];
}

export interface Dockerfile {
  file: string;
  /** The text by line, for positioning later errors with placeError(e, source, start, end). */
  source: SourceText;
  directives: Directive[];
  escapeToken: EscapeToken;
  /** ARGs before the first FROM (the global scope for FROM lines). */
  metaArgs: ArgCommand[];
  stages: Stage[];
  warnings: ParseWarning[];
}

export const INSTRUCTIONS = [
  "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
  "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
] as const; // prettier-ignore

const EXPANDABLE = new Set<CommandKind>([
  "add", "copy", "env", "expose", "label", "stopsignal", "user", "volume", "workdir", "arg", "run",
]); // prettier-ignore

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function argsError(message: string, hint?: string): UnplacedError {
  return new UnplacedError(
    DockerfileErrorCode.arguments,
    message,
    hint === undefined ? {} : { hint },
  );
}

/** What a correct line looks like, for hints. */
const EXAMPLES: Readonly<Record<string, string>> = {
  ARG: "ARG NAME=default",
  ENV: "ENV NAME=value",
  EXPOSE: "EXPOSE 8080/tcp",
  HEALTHCHECK: "HEALTHCHECK CMD curl -f http://localhost/",
  LABEL: 'LABEL org.opencontainers.image.title="app"',
  MAINTAINER: "MAINTAINER Jane Doe <jane@example.com>",
  ONBUILD: "ONBUILD RUN make",
  SHELL: 'SHELL ["/bin/bash", "-c"]',
  STOPSIGNAL: "STOPSIGNAL SIGTERM",
  USER: "USER app:app",
  VOLUME: "VOLUME /data",
  WORKDIR: "WORKDIR /app",
};

const atLeastOne = (what: string): UnplacedError =>
  argsError(
    `${what} requires at least one argument`,
    EXAMPLES[what] === undefined ? undefined : `e.g. ${EXAMPLES[what]}`,
  );
const exactlyOne = (what: string): UnplacedError =>
  argsError(`${what} requires exactly one argument`, `e.g. ${EXAMPLES[what] ?? what + " <value>"}`);

type Typed = { stage: Stage } | { command: Command };

class Typer {
  constructor(private readonly source: SourceText) {}

  base(node: InstructionNode, kind: CommandKind): CommandBase {
    return {
      keyword: node.keyword,
      code: trimGoSpace(node.original),
      location: { file: this.source.file, startLine: node.startLine, endLine: node.endLine },
      expandable: EXPANDABLE.has(kind),
      comments: node.comments,
    };
  }

  flags(node: InstructionNode, spec: Readonly<Record<string, FlagKind>>): ParsedFlags {
    return parseFlags(node.flags, spec, node.keyword.toUpperCase());
  }

  type(node: InstructionNode): Typed {
    const args = node.args;
    const kw = node.keyword.toLowerCase();
    switch (kw) {
      case "from":
        return { stage: this.from(node) };
      case "env":
      case "label": {
        this.flags(node, {});
        const what = kw.toUpperCase();
        if (args.length === 0) throw atLeastOne(what);
        const pairs: KeyValuePair[] = [];
        for (let i = 0; i + 2 < args.length; i += 3) {
          const key = args[i]!;
          if (key === "") {
            throw argsError(`${what} names can not be blank`, `write ${what} name=value`);
          }
          pairs.push({ key, value: args[i + 1]!, legacy: args[i + 2] === "" });
        }
        return kw === "env"
          ? { command: { ...this.base(node, "env"), kind: "env", pairs } }
          : { command: { ...this.base(node, "label"), kind: "label", pairs } };
      }
      case "maintainer": {
        if (args.length !== 1) throw exactlyOne("MAINTAINER");
        this.flags(node, {});
        return {
          command: { ...this.base(node, "maintainer"), kind: "maintainer", maintainer: args[0]! },
        };
      }
      case "add":
        return { command: this.add(node) };
      case "copy":
        return { command: this.copy(node) };
      case "onbuild":
        return { command: this.onbuild(node) };
      case "workdir": {
        if (args.length !== 1) throw exactlyOne("WORKDIR");
        this.flags(node, {});
        return { command: { ...this.base(node, "workdir"), kind: "workdir", path: args[0]! } };
      }
      case "run":
        return { command: this.run(node) };
      case "cmd":
        this.flags(node, {});
        return { command: { ...this.base(node, "cmd"), kind: "cmd", ...shellDependent(node) } };
      case "entrypoint": {
        this.flags(node, {});
        return {
          command: {
            ...this.base(node, "entrypoint"),
            kind: "entrypoint",
            ...shellDependent(node),
          },
        };
      }
      case "healthcheck":
        return { command: this.healthcheck(node) };
      case "expose": {
        if (args.length === 0) throw atLeastOne("EXPOSE");
        this.flags(node, {});
        return {
          command: { ...this.base(node, "expose"), kind: "expose", ports: sortLikeGo(args) },
        };
      }
      case "user": {
        if (args.length !== 1) throw exactlyOne("USER");
        this.flags(node, {});
        return { command: { ...this.base(node, "user"), kind: "user", user: args[0]! } };
      }
      case "volume": {
        if (args.length === 0) throw atLeastOne("VOLUME");
        this.flags(node, {});
        const volumes = args.map(trimGoSpace);
        if (volumes.includes(""))
          throw argsError("VOLUME specified can not be an empty string", "e.g. VOLUME /data");
        return { command: { ...this.base(node, "volume"), kind: "volume", volumes } };
      }
      case "stopsignal": {
        // BuildKit does not validate STOPSIGNAL flags; neither do we.
        if (args.length !== 1) throw exactlyOne("STOPSIGNAL");
        return {
          command: { ...this.base(node, "stopsignal"), kind: "stopsignal", signal: args[0]! },
        };
      }
      case "arg":
        // BuildKit does not validate ARG flags either.
        return { command: this.arg(node) };
      case "shell": {
        this.flags(node, {});
        const { cmdLine } = shellDependent(node);
        if (cmdLine.length === 0) throw atLeastOne("SHELL");
        if (!node.json) {
          throw argsError(
            `SHELL requires the arguments to be in JSON form`,
            'write SHELL ["/bin/bash", "-c"]',
          );
        }
        return { command: { ...this.base(node, "shell"), kind: "shell", shell: cmdLine } };
      }
      default: {
        const near = suggest(node.keyword, INSTRUCTIONS, false);
        throw new UnplacedError(
          DockerfileErrorCode.unknownInstruction,
          `unknown instruction: ${node.keyword}${near === undefined ? "" : ` (did you mean ${near}?)`}`,
          {
            needle: node.keyword,
            hint:
              near === undefined
                ? `instructions are ${INSTRUCTIONS.join(", ")}`
                : `did you mean ${near}? Instructions are ${INSTRUCTIONS.join(", ")}`,
          },
        );
      }
    }
  }

  private from(node: InstructionNode): Stage {
    const args = node.args;
    let name: string | undefined;
    if (args.length === 3 && args[1]!.toLowerCase() === "as") {
      name = args[2]!.toLowerCase();
      if (!STAGE_NAME.test(name)) {
        throw new UnplacedError(
          DockerfileErrorCode.arguments,
          `invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`,
          { needle: args[2]!, hint: "stage names match [a-z][a-z0-9-_.]*" },
        );
      }
    } else if (args.length !== 1) {
      throw argsError(
        "FROM requires either one or three arguments",
        "write FROM <image> or FROM <image> AS <name>",
      );
    }
    const flags = this.flags(node, { platform: "string" });
    const platform = flags.used.has("platform") ? flags.string("platform") : undefined;
    const stage: Stage = {
      keyword: node.keyword,
      baseName: args[0]!,
      commands: [],
      code: trimGoSpace(node.original),
      location: { file: this.source.file, startLine: node.startLine, endLine: node.endLine },
      comments: node.comments,
    };
    if (name !== undefined) {
      stage.name = name;
      stage.asKeyword = args[1]!;
      stage.nameAsWritten = args[2]!;
    }
    if (platform !== undefined) stage.platform = platform;
    return stage;
  }

  private sourcesAndDest(node: InstructionNode, what: string): SourcesAndDest {
    const args = node.args;
    const dest = args[args.length - 1]!;
    if (parseHeredocWord(dest) !== undefined) {
      throw new UnplacedError(
        DockerfileErrorCode.arguments,
        `${what} cannot accept a heredoc as a destination`,
        { needle: dest, hint: `write ${what} <<EOF /path/to/file` },
      );
    }
    const byName = new Map<string, Heredoc>();
    for (const h of node.heredocs) byName.set(h.name, h);
    const sources: string[] = [];
    const sourceContents: SourceContent[] = [];
    for (const src of args.slice(0, -1)) {
      const h = parseHeredocWord(src);
      if (h === undefined) {
        sources.push(src);
        continue;
      }
      const body = byName.get(h.name)?.content ?? "";
      sourceContents.push({
        path: h.name,
        data: h.chomp ? chompHeredocContent(body) : body,
        expand: h.expand,
      });
    }
    return { sources, sourceContents, dest };
  }

  private noDestination(what: string): UnplacedError {
    return argsError(
      `${what} requires at least two arguments, but only one was provided. Destination could not be determined`,
      `write ${what} <source>... <dest>`,
    );
  }

  private add(node: InstructionNode): AddCommand {
    if (node.args.length < 2) throw this.noDestination("ADD");
    const f = this.flags(node, {
      chown: "string",
      chmod: "string",
      link: "bool",
      "keep-git-dir": "bool",
      checksum: "string",
      unpack: "bool",
      exclude: "strings",
    });
    const cmd: AddCommand = {
      ...this.base(node, "add"),
      kind: "add",
      ...this.sourcesAndDest(node, "ADD"),
      chown: f.string("chown"),
      chmod: f.string("chmod"),
      link: f.bool("link"),
      checksum: f.string("checksum"),
      excludes: f.strings("exclude"),
    };
    if (f.used.has("keep-git-dir")) cmd.keepGitDir = f.bool("keep-git-dir");
    if (f.used.has("unpack")) cmd.unpack = f.bool("unpack");
    return cmd;
  }

  private copy(node: InstructionNode): CopyCommand {
    if (node.args.length < 2) throw this.noDestination("COPY");
    const f = this.flags(node, {
      chown: "string",
      from: "string",
      chmod: "string",
      link: "bool",
      exclude: "strings",
      parents: "bool",
    });
    return {
      ...this.base(node, "copy"),
      kind: "copy",
      ...this.sourcesAndDest(node, "COPY"),
      from: f.string("from"),
      chown: f.string("chown"),
      chmod: f.string("chmod"),
      link: f.bool("link"),
      parents: f.bool("parents"),
      excludes: f.strings("exclude"),
    };
  }

  private run(node: InstructionNode): RunCommand {
    const f = this.flags(node, {
      mount: "strings",
      network: "string",
      security: "string",
      device: "strings",
    });
    const network = f.used.has("network") ? f.string("network") : "default";
    if (network !== "default" && network !== "none" && network !== "host") {
      throw new UnplacedError(
        DockerfileErrorCode.flagValue,
        `invalid network mode ${JSON.stringify(network)}`,
        { needle: "--network", hint: "--network is one of default, none, host" },
      );
    }
    const security = f.used.has("security") ? f.string("security") : "sandbox";
    if (security !== "sandbox" && security !== "insecure") {
      throw new UnplacedError(
        DockerfileErrorCode.flagValue,
        `security ${JSON.stringify(security)} is not valid`,
        { needle: "--security", hint: "--security is one of sandbox, insecure" },
      );
    }
    const devices = f.strings("device").map(parseRunDevice);
    const mounts = f.strings("mount");
    for (const m of mounts) checkRunMount(m);
    return {
      ...this.base(node, "run"),
      kind: "run",
      ...shellDependent(node),
      mounts,
      network,
      security,
      devices,
      flagsUsed: [...f.used],
    };
  }

  private healthcheck(node: InstructionNode): HealthcheckCommand {
    const args = node.args;
    if (args.length === 0) throw atLeastOne("HEALTHCHECK");
    const typ = args[0]!.toUpperCase();
    const rest = args.slice(1);
    const health: HealthConfig = {
      test: [],
      interval: 0,
      timeout: 0,
      startPeriod: 0,
      startInterval: 0,
      retries: 0,
    };
    if (typ === "NONE") {
      // BuildKit does not look at flags on HEALTHCHECK NONE.
      if (rest.length !== 0) {
        throw argsError("HEALTHCHECK NONE takes no arguments", "write HEALTHCHECK NONE alone");
      }
      health.test = ["NONE"];
      return { ...this.base(node, "healthcheck"), kind: "healthcheck", health };
    }
    const f = this.flags(node, {
      interval: "string",
      timeout: "string",
      "start-period": "string",
      "start-interval": "string",
      retries: "string",
    });
    if (typ !== "CMD") {
      throw new UnplacedError(
        DockerfileErrorCode.arguments,
        `Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`,
        { needle: args[0]!, hint: "write HEALTHCHECK CMD <command> or HEALTHCHECK NONE" },
      );
    }
    const cmdLine = rest.length === 0 ? [] : node.json ? rest : [rest.join(" ")];
    if (cmdLine.length === 0)
      throw argsError("Missing command after HEALTHCHECK CMD", `e.g. ${EXAMPLES.HEALTHCHECK}`);
    health.test = [node.json ? "CMD" : "CMD-SHELL", ...cmdLine];
    const interval = (name: string): number => {
      const v = f.string(name);
      if (v === "") return 0;
      const d = parseGoDuration(v);
      if (d === undefined) {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `time: invalid duration ${JSON.stringify(v)}`,
          { needle: `--${name}`, hint: "durations look like 30s, 1m30s, 500ms" },
        );
      }
      if (d === 0) return 0;
      if (d < 1_000_000) {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `Interval ${JSON.stringify(name)} cannot be less than 1ms`,
          { needle: `--${name}` },
        );
      }
      return d;
    };
    health.interval = interval("interval");
    health.timeout = interval("timeout");
    health.startPeriod = interval("start-period");
    health.startInterval = interval("start-interval");
    const retries = f.string("retries");
    if (retries !== "") {
      const r = parseGoInt32(retries);
      if (r === undefined) {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `strconv.ParseInt: parsing ${JSON.stringify(retries)}: invalid syntax`,
          { needle: "--retries", hint: "--retries takes a whole number" },
        );
      }
      if (r < 0) {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `--retries cannot be negative (${r})`,
          { needle: "--retries" },
        );
      }
      health.retries = r;
    }
    return { ...this.base(node, "healthcheck"), kind: "healthcheck", health };
  }

  private arg(node: InstructionNode): ArgCommand {
    if (node.args.length === 0) throw atLeastOne("ARG");
    const args = node.args.map((a): ArgDefinition => {
      const eq = a.indexOf("=");
      if (eq < 0) return { key: a };
      if (eq === 0) throw argsError("ARG names can not be blank", `e.g. ${EXAMPLES.ARG}`);
      return { key: a.slice(0, eq), value: a.slice(eq + 1) };
    });
    return { ...this.base(node, "arg"), kind: "arg", args };
  }

  private onbuild(node: InstructionNode): OnbuildCommand {
    if (node.args.length === 0 || node.trigger === undefined) throw atLeastOne("ONBUILD");
    this.flags(node, {});
    const trigger = trimGoSpace(node.args[0]!).toUpperCase();
    if (trigger === "ONBUILD") {
      throw argsError(
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        "give the trigger instruction once: ONBUILD <instruction>",
      );
    }
    if (trigger === "MAINTAINER" || trigger === "FROM") {
      throw argsError(
        `${trigger} isn't allowed as an ONBUILD trigger`,
        "ONBUILD triggers are build steps such as RUN, COPY or ENV",
      );
    }
    let expression = node.original.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, "");
    for (const h of node.heredocs) expression += "\n" + h.content + h.name;
    const cmd: OnbuildCommand = { ...this.base(node, "onbuild"), kind: "onbuild", expression };
    const sub: InstructionNode = {
      ...node.trigger,
      heredocs: node.heredocs,
      startLine: node.startLine,
      endLine: node.endLine,
    };
    try {
      const typed = this.type(sub);
      if ("command" in typed) cmd.trigger = typed.command;
    } catch (e) {
      if (!(e instanceof UnplacedError)) throw e;
    }
    return cmd;
  }
}

function shellDependent(node: InstructionNode): ShellDependentCmdLine {
  const args = node.args;
  return {
    cmdLine: args.length === 0 ? [] : node.json ? [...args] : [args.join(" ")],
    prependShell: !node.json,
    files: node.heredocs.map((h) => ({ name: h.name, data: h.content, chomp: h.chomp })),
  };
}

/** Go's sort.Strings order (by UTF-8 bytes), which differs from JS for astral characters. */
function sortLikeGo(values: string[]): string[] {
  return values
    .map((v) => ({ v, b: Buffer.from(v) }))
    .sort((x, y) => Buffer.compare(x.b, y.b))
    .map((x) => x.v);
}

export interface ParseOptions {
  /** Name shown in error messages, e.g. "Dockerfile" or a path. */
  file?: string;
}

/**
 * Parses Dockerfile text into directives, global ARGs and stages with typed commands.
 * Throws DockerfileError (a KilnError with code E_DOCKERFILE_*, file, line and column).
 */
export function parseDockerfile(source: string, opts: ParseOptions = {}): Dockerfile {
  const parsed = parseNodes(source, opts.file ?? "Dockerfile");
  const typer = new Typer(parsed.source);
  const metaArgs: ArgCommand[] = [];
  const stages: Stage[] = [];
  for (const node of parsed.nodes) {
    let typed: Typed;
    try {
      typed = typer.type(node);
    } catch (e) {
      throw placeError(e, parsed.source, node.startLine, node.endLine);
    }
    if ("stage" in typed) {
      stages.push(typed.stage);
      continue;
    }
    const current = stages[stages.length - 1];
    if (current === undefined) {
      if (typed.command.kind === "arg") {
        metaArgs.push(typed.command);
        continue;
      }
      throw new DockerfileError(
        DockerfileErrorCode.structure,
        "no build stage in current context",
        { source: parsed.source, ...locate(parsed.source, node.startLine, node.endLine) },
        { hint: "only ARG may come before the first FROM; add a FROM line above this one" },
      );
    }
    current.commands.push(typed.command);
  }
  return {
    file: parsed.source.file,
    source: parsed.source,
    directives: parsed.directives,
    escapeToken: parsed.escapeToken,
    metaArgs,
    stages,
    warnings: parsed.warnings,
  };
}
