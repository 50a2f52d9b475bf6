/**
 * BuildKit's Dockerfile checks (frontend/dockerfile/linter): named rules whose findings are
 * build warnings, configured by the `# check=` directive or the BUILDKIT_DOCKERFILE_CHECK build
 * arg (`skip=<rules>|all`, `error=true`, `experimental=<rules>|all`), and per instruction by a
 * `# check=` comment right above it. With error=true any finding fails the build before it runs.
 */
import { DockerfileErrorCode, UnplacedError } from "./errors.js";
import type { Command, Dockerfile, Stage } from "./instructions.js";
import { suggest } from "./text.js";
import { parseNormalized } from "../../platform/index.js";

/** Each rule's message, worded as BuildKit's ruleset. */
export const RULES = {
  StageNameCasing: (name: string) => `Stage name '${name}' should be lowercase`,
  FromAsCasing: (from: string, as: string) => `'${as}' and '${from}' keywords' casing do not match`,
  NoEmptyContinuation: () => "Empty continuation line",
  ConsistentInstructionCasing: (command: string, casing: string) =>
    `Command '${command}' should match the case of the command majority (${casing})`,
  DuplicateStageName: (name: string) =>
    `Duplicate stage name ${JSON.stringify(name)}, stage names should be unique`,
  ReservedStageName: (name: string) =>
    `Stage name should not use the same name as reserved stage ${JSON.stringify(name)}`,
  JSONArgsRecommended: (instruction: string) =>
    `JSON arguments recommended for ${instruction} to prevent unintended behavior related to OS signals`,
  MaintainerDeprecated: () => "Maintainer instruction is deprecated in favor of using label",
  WorkdirRelativePath: (workdir: string) =>
    `Relative workdir ${JSON.stringify(workdir)} can have unexpected results if the base image changes`,
  MultipleInstructionsDisallowed: (instruction: string) =>
    `Multiple ${instruction} instructions should not be used in the same stage because only the last one will be used`,
  LegacyKeyValueFormat: (instruction: string) =>
    `"${instruction} key=value" should be used instead of legacy "${instruction} key value" format`,
  InvalidDefaultArgInFrom: (baseName: string) =>
    `Default value for ARG ${baseName} results in empty or invalid base image name`,
  UndefinedVar: (name: string, suggestion: string | undefined) =>
    `Usage of undefined variable '$${name}'${suggestion ? ` (did you mean $${suggestion}?)` : ""}`,
  UndefinedArgInFrom: (arg: string, suggestion: string | undefined) =>
    `FROM argument '${arg}' is not declared${suggestion ? ` (did you mean ${suggestion}?)` : ""}`,
  RedundantTargetPlatform: (platform: string) =>
    `Setting platform to predefined ${platform} in FROM is redundant as this is the default behavior`,
  FromPlatformFlagConstDisallowed: (platform: string) =>
    `FROM --platform flag should not use constant value ${JSON.stringify(platform)}`,
  SecretsUsedInArgOrEnv: (instruction: string, key: string) =>
    `Do not use ARG or ENV instructions for sensitive data (${instruction} ${JSON.stringify(key)})`,
  ExposeProtoCasing: (port: string) =>
    `Defined protocol '${port}' in EXPOSE instruction should be lowercase`,
  ExposeInvalidFormat: (port: string) =>
    `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`,
  InvalidBaseImagePlatform: (image: string, expected: string, actual: string) =>
    `Base image ${image} was pulled with platform ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} for current build`,
} as const;

export type LintRule = keyof typeof RULES;

/** Stage names BuildKit keeps for itself. */
const RESERVED_STAGE_NAMES = new Set(["context", "scratch"]);

export interface LintConfig {
  skipAll: boolean;
  skip: ReadonlySet<string>;
  error: boolean;
}

function invalid(message: string): UnplacedError {
  return new UnplacedError(DockerfileErrorCode.parse, message, {
    hint: "write check=skip=<rule>[,<rule>…]|all;error=true|false;experimental=<rule>|all",
  });
}

/** Parses a check directive's value (linter.ParseLintOptions). */
export function parseCheckOptions(text: string): LintConfig {
  const config = { skipAll: false, skip: new Set<string>(), error: false };
  const value = text.trim();
  if (value === "") return config;
  // like Go's SplitN(…, ";", 3): a third part keeps any further ";"
  const parts = value.split(";");
  const fields = parts.length > 3 ? [...parts.slice(0, 2), parts.slice(2).join(";")] : parts;
  for (const part of fields) {
    const eq = part.indexOf("=");
    if (eq < 0)
      throw invalid(`failed to parse check options: invalid check option ${JSON.stringify(part)}`);
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (key === "skip") {
      if (v === "all") config.skipAll = true;
      else for (const rule of v.split(",")) config.skip.add(rule.trim());
    } else if (key === "experimental") {
      // no experimental rules are implemented: nothing to enable
    } else if (key === "error") {
      const b = parseGoBool(v);
      if (b === undefined)
        throw invalid(
          `failed to parse check options: failed to parse check option ${JSON.stringify(part)}`,
        );
      config.error = b;
    } else {
      throw invalid(`failed to parse check options: invalid check option ${JSON.stringify(key)}`);
    }
  }
  return config;
}

/** Go's strconv.ParseBool. */
function parseGoBool(v: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  return undefined;
}

/** A `# check=…` comment line above an instruction, if it is one. */
function checkComment(comments: readonly string[]): LintConfig | undefined {
  for (const c of comments) {
    const m = /^\s*check\s*=\s*(.*?)\s*$/i.exec(c);
    if (!m) continue;
    try {
      return parseCheckOptions(m[1]!.split(" ")[0]!);
    } catch {
      return undefined; // BuildKit ignores a malformed per-instruction comment
    }
  }
  return undefined;
}

export interface LintFinding {
  rule: LintRule;
  message: string;
  line: number;
}

/** Runs rules under a configuration; findings of every view are collected together. */
export class Linter {
  constructor(
    private readonly config: LintConfig,
    private readonly findings: LintFinding[] = [],
  ) {}

  /** The linter for one instruction, with its `# check=` comment merged in. */
  for(comments: readonly string[]): Linter {
    const c = checkComment(comments);
    if (!c) return this;
    return new Linter(
      {
        skipAll: this.config.skipAll || c.skipAll,
        skip: new Set([...this.config.skip, ...c.skip]),
        error: this.config.error,
      },
      this.findings,
    );
  }

  run(rule: LintRule, line: number, message: string): void {
    if (this.config.skipAll || this.config.skip.has(rule)) return;
    // a stage converted for two platforms reports once
    if (this.findings.some((f) => f.rule === rule && f.line === line && f.message === message))
      return;
    this.findings.push({ rule, message, line });
  }

  /** Findings so far. */
  get warnings(): readonly LintFinding[] {
    return this.findings;
  }

  /**
   * With error=true and a finding: the error that fails the build (BuildKit: "lint violation
   * found for rules: …"), with every finding in the hint.
   */
  error(file: string): { line: number; error: UnplacedError } | undefined {
    const first = this.findings[0];
    if (!this.config.error || first === undefined) return undefined;
    const rules = [...new Set(this.findings.map((f) => f.rule))];
    return {
      line: first.line,
      error: new UnplacedError(
        DockerfileErrorCode.lint,
        `lint violation found for rules: ${rules.join(", ")}`,
        {
          hint: [
            ...this.findings.map((f) => `${file}:${f.line}: ${f.rule}: ${f.message}`),
            `fix them, or skip the rule: # check=skip=${rules[0]} (a --build-arg BUILDKIT_DOCKERFILE_CHECK replaces that directive)`,
          ].join("\n"),
        },
      ),
    };
  }
}

/** The configuration of a build: the build arg wins over the directive (BuildKit's dockerui). */
export function lintConfig(df: Dockerfile, buildArg: string | undefined): LintConfig {
  const directive = df.directives.find((d) => d.name === "check");
  try {
    return parseCheckOptions(buildArg ?? directive?.value ?? "");
  } catch (e) {
    if (buildArg !== undefined && e instanceof UnplacedError)
      throw new UnplacedError(e.code, `BUILDKIT_DOCKERFILE_CHECK: ${e.message}`, {
        hint: e.hint,
      });
    throw e;
  }
}

function selfConsistent(s: string): boolean {
  return s === s.toLowerCase() || s === s.toUpperCase();
}

/** The rules BuildKit runs on the parsed file, for every stage whether built or not. */
export function lintDockerfile(df: Dockerfile, lint: Linter): void {
  for (const w of df.warnings) lint.run("NoEmptyContinuation", w.line, RULES.NoEmptyContinuation());
  const names = new Set<string>();
  const keywords: { keyword: string; line: number }[] = [];
  for (const stage of df.stages) {
    const l = lint.for(stage.comments);
    const line = stage.location.startLine;
    const { keyword, asKeyword, nameAsWritten } = stage;
    if (nameAsWritten !== undefined && nameAsWritten !== nameAsWritten.toLowerCase())
      l.run("StageNameCasing", line, RULES.StageNameCasing(nameAsWritten));
    // a FROM of mixed case is ConsistentInstructionCasing's business
    if (asKeyword !== undefined && selfConsistent(keyword)) {
      const want =
        keyword === keyword.toLowerCase() ? asKeyword.toLowerCase() : asKeyword.toUpperCase();
      if (asKeyword !== want) l.run("FromAsCasing", line, RULES.FromAsCasing(keyword, asKeyword));
    }
    keywords.push({ keyword, line });
    for (const c of stage.commands) {
      if (c.kind === "maintainer")
        lint
          .for(c.comments)
          .run("MaintainerDeprecated", c.location.startLine, RULES.MaintainerDeprecated());
      keywords.push({ keyword: c.keyword, line: c.location.startLine });
    }
  }
  for (const stage of df.stages) {
    if (stage.name === undefined) continue;
    const line = stage.location.startLine;
    if (RESERVED_STAGE_NAMES.has(stage.name))
      lint.run("ReservedStageName", line, RULES.ReservedStageName(stage.name));
    if (names.has(stage.name))
      lint.run("DuplicateStageName", line, RULES.DuplicateStageName(stage.name));
    names.add(stage.name);
  }
  const consistent = keywords.filter((k) => selfConsistent(k.keyword));
  const lower = consistent.filter((k) => k.keyword === k.keyword.toLowerCase()).length;
  const majorityLower = lower > consistent.length - lower;
  for (const k of keywords) {
    const casing =
      majorityLower && k.keyword !== k.keyword.toLowerCase()
        ? "lowercase"
        : !majorityLower && k.keyword !== k.keyword.toUpperCase()
          ? "uppercase"
          : undefined;
    if (casing)
      lint.run(
        "ConsistentInstructionCasing",
        k.line,
        RULES.ConsistentInstructionCasing(k.keyword, casing),
      );
  }
}

/** What the rules run while a stage is converted need to remember about it. */
export interface StageLintState {
  /** where CMD, ENTRYPOINT and HEALTHCHECK were last used in the stage */
  used: Map<string, number>;
  /** a WORKDIR was set in this stage or the stage it is built from */
  workdirSet: boolean;
}

/** The rules BuildKit runs as it converts a command of a stage it builds. */
export function lintCommand(
  lint: Linter,
  c: Command,
  st: StageLintState,
  ctx: { shell: readonly string[] | undefined; workdir?: string },
): void {
  const l = lint.for(c.comments);
  const line = c.location.startLine;
  switch (c.kind) {
    case "env":
      for (const p of c.pairs) {
        if (p.legacy) l.run("LegacyKeyValueFormat", line, RULES.LegacyKeyValueFormat(c.keyword));
        if (looksSecret(p.key))
          l.run("SecretsUsedInArgOrEnv", line, RULES.SecretsUsedInArgOrEnv("ENV", p.key));
      }
      return;
    case "label":
      if (c.pairs.some((p) => p.legacy))
        l.run("LegacyKeyValueFormat", line, RULES.LegacyKeyValueFormat(c.keyword));
      return;
    case "arg":
      for (const a of c.args)
        if (looksSecret(a.key))
          l.run("SecretsUsedInArgOrEnv", line, RULES.SecretsUsedInArgOrEnv("ARG", a.key));
      return;
    case "workdir":
      if (!st.workdirSet && ctx.workdir !== undefined && !ctx.workdir.startsWith("/"))
        l.run("WorkdirRelativePath", line, RULES.WorkdirRelativePath(ctx.workdir));
      st.workdirSet = true;
      return;
    case "cmd":
    case "entrypoint":
    case "healthcheck": {
      const previous = st.used.get(c.kind);
      // reported at the earlier one: that is the instruction that has no effect
      if (previous !== undefined)
        l.run(
          "MultipleInstructionsDisallowed",
          previous,
          RULES.MultipleInstructionsDisallowed(c.keyword),
        );
      st.used.set(c.kind, line);
      if (c.kind !== "healthcheck" && c.prependShell && !ctx.shell?.length)
        l.run("JSONArgsRecommended", line, RULES.JSONArgsRecommended(c.keyword));
      return;
    }
    default:
      return;
  }
}

const SECRET =
  /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const NOT_SECRET = /(?:_|^)(?:public|file|version)(?:_|$)/i;

/** A name that reads like it holds a secret (BuildKit's validateNoSecretKey). */
function looksSecret(key: string): boolean {
  return SECRET.test(key) && !NOT_SECRET.test(key);
}

/** What expanding a FROM word found: its value and the variables it used or missed. */
export interface WordMatch {
  result: string;
  matched: ReadonlySet<string>;
  unmatched: ReadonlySet<string>;
}

/**
 * The rules BuildKit runs on a FROM line's expansion: variables that are no global ARG,
 * `--platform=$TARGETPLATFORM` (the default anyway) and a constant --platform.
 */
export function lintFrom(
  lint: Linter,
  stage: Stage,
  base: WordMatch,
  platform: WordMatch | undefined,
  env: { keys: readonly string[]; targetPlatform: string },
): void {
  const l = lint.for(stage.comments);
  const line = stage.location.startLine;
  const undeclared = (m: WordMatch): void => {
    for (const v of m.unmatched) {
      if (env.keys.includes(v)) continue;
      l.run("UndefinedArgInFrom", line, RULES.UndefinedArgInFrom(v, suggest(v, env.keys, true)));
    }
  };
  undeclared(base);
  if (!platform || stage.platform === undefined) return;
  undeclared(platform);
  if (
    platform.matched.size === 1 &&
    platform.unmatched.size === 0 &&
    platform.matched.has("TARGETPLATFORM") &&
    platform.result === env.targetPlatform
  )
    l.run("RedundantTargetPlatform", line, RULES.RedundantTargetPlatform(stage.platform));
  if (platform.matched.size === 0 && platform.unmatched.size === 0) {
    let p;
    try {
      p = parseNormalized(platform.result);
    } catch {
      return; // the build fails on it later
    }
    const name = stage.name ?? "";
    if (!name.includes(p.os) && !name.includes(p.architecture))
      l.run(
        "FromPlatformFlagConstDisallowed",
        line,
        RULES.FromPlatformFlagConstDisallowed(platform.result),
      );
  }
}

/** EXPOSE port checks (BuildKit's parsePort), on each port as written. */
export function lintExposePort(
  lint: Linter,
  c: Command,
  raw: string,
  parts: { ip: string; hostPort: string; proto: string },
): void {
  const l = lint.for(c.comments);
  if (parts.proto !== parts.proto.toLowerCase())
    l.run("ExposeProtoCasing", c.location.startLine, RULES.ExposeProtoCasing(raw));
  if (parts.ip !== "" || parts.hostPort !== "")
    l.run("ExposeInvalidFormat", c.location.startLine, RULES.ExposeInvalidFormat(raw));
}

/** Variables a command's words used that nothing set or declared (BuildKit's UndefinedVar). */
export function lintUndefinedVars(
  lint: Linter,
  c: Command,
  names: readonly string[],
  known: readonly string[],
): void {
  const l = lint.for(c.comments);
  for (const name of names)
    l.run(
      "UndefinedVar",
      c.location.startLine,
      RULES.UndefinedVar(name, suggest(name, known, true)),
    );
}
