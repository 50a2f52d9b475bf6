/**
 * Dockerfile → build graph, once per target platform (BuildKit's dockerfile2llb). Pure but for
 * image config resolution, which comes through an injected resolver. Ops carry their platform,
 * so a stage pinned to $BUILDPLATFORM that uses no TARGET* value produces the same vertices
 * for every target and the solver runs it once.
 *
 * Departure from BuildKit, on purpose: `FROM --platform=X <stage>` builds that stage for X
 * (BuildKit silently ignores the flag on stage references, moby/buildkit#2946).
 */
import { isIP } from "node:net";
import { posix } from "node:path";
import { KilnError } from "../../errors.js";
import { entitlementHint, type Entitlement } from "../../entitlements/index.js";
import {
  vertex,
  type ExecMount,
  type FileAction,
  type GitSourceOp,
  type Vertex,
} from "../../graph/index.js";
import type { ContainerConfig, HistoryEntry, ImageConfig } from "../../oci/types.js";
import { format, formatAll, normalize, parse, parseNormalized } from "../../platform/index.js";
import type { Platform } from "../../platform/types.js";
import { parseChmod } from "../../fileops/index.js";
import { parseGitRef, redactUrl, urlFileName, type GitRef } from "../../source/index.js";
import { formatReference, parseReference } from "../../reference/index.js";
import {
  Linter,
  RULES,
  lintCommand,
  lintConfig,
  lintDockerfile,
  lintExposePort,
  lintFrom,
  lintUndefinedVars,
  type LintFinding,
  type StageLintState,
  type WordMatch,
} from "./lint.js";
import { DockerfileErrorCode, UnplacedError, placeError } from "./errors.js";
import {
  parseDockerfile,
  type AddCommand,
  type ArgCommand,
  type Command,
  type CopyCommand,
  type Dockerfile,
  type RunCommand,
  type Stage,
} from "./instructions.js";
import { mountDefaults, parseCsvFields, parseRunMount } from "./mounts.js";
import { chompHeredocContent, parseHeredocWord } from "./parser.js";
import { ShellLex } from "./shell.js";
import { goDuration, goList, goQuoted } from "./gofmt.js";
import { docComment, type Outline } from "./outline.js";

export interface ResolvedBaseImage {
  /** canonical `registry/repo@sha256:…` of the platform manifest */
  ref: string;
  manifestDigest: string;
  config: ImageConfig;
}

export interface ConvertOptions {
  targetPlatform: Platform;
  /** the platform of the machine that builds (first worker platform) */
  buildPlatform: Platform;
  /** prefix step names with the platform (more than one target) */
  multiPlatform: boolean;
  /** no --platform was given: the target is the build platform */
  implicitTarget: boolean;
  buildArgs: Readonly<Record<string, string>>;
  target?: string;
  labels: Readonly<Record<string, string>>;
  network: "default" | "none" | "host";
  /** what the build may do beyond the sandbox (`--allow`) */
  entitlements?: ReadonlySet<Entitlement>;
  extraHosts: { host: string; ip: string }[];
  /** local build contexts by name: "context" and the --build-context names */
  contexts: ReadonlyMap<string, { dir: string; excludePatterns: string[] }>;
  /** `--build-context name=docker-image://ref`: the image that replaces `FROM name` and `--from=name` */
  imageContexts?: ReadonlyMap<string, string>;
  resolveImage(name: string, platform: Platform): Promise<ResolvedBaseImage>;
  /** `--call check`: report what the Dockerfile checks find, never fail on check=error=true */
  checkOnly?: boolean;
}

export interface ConvertWarning {
  message: string;
  location?: { file: string; line: number };
}

export interface ConvertResult {
  /** the final stage's filesystem; undefined for an empty (scratch) result */
  root: Vertex | undefined;
  platform: Platform;
  config: ImageConfig;
  baseHistoryLength: number;
  historyProducers: (string | undefined)[];
  /** the stage each vertex was created for (for --no-cache-filter) */
  vertexStages: Map<string, string>;
  warnings: ConvertWarning[];
  /** what the Dockerfile checks found (also among the warnings) */
  checks: readonly LintFinding[];
  /** what the target needs from the caller (`--call outline`) */
  outline: Outline;
}

const HISTORY_COMMENT = "buildkit.dockerfile.v0";
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SCRATCH = "scratch";
/** Build args BuildKit accepts without an ARG instruction (never "not consumed"). */
const BUILTIN_ARGS = new Set([
  "HTTP_PROXY",
  "http_proxy",
  "HTTPS_PROXY",
  "https_proxy",
  "FTP_PROXY",
  "ftp_proxy",
  "NO_PROXY",
  "no_proxy",
  "ALL_PROXY",
  "all_proxy",
  "SOURCE_DATE_EPOCH",
  "BUILDKIT_CACHE_MOUNT_NS",
  "BUILDKIT_MULTI_PLATFORM",
  "BUILDKIT_INLINE_CACHE",
  "BUILDKIT_SYNTAX",
  "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
  "BUILDKIT_SANDBOX_HOSTNAME",
  "BUILDKIT_BUILD_NAME",
  "BUILDKIT_DOCKERFILE_CHECK",
]);
const NON_ENV_ARGS = new Set(["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"]);

/**
 * A RUN step's environment as LLB's EnvList keeps it: setting a key again moves it to the end
 * (the image config's Env, by contrast, replaces in place: see addEnv).
 */
class Env {
  constructor(readonly pairs: [string, string][] = []) {}
  clone(): Env {
    return new Env(this.pairs.map(([k, v]) => [k, v]));
  }
  get(k: string): string | undefined {
    return this.pairs.find(([key]) => key === k)?.[1];
  }
  set(k: string, v: string): void {
    const i = this.pairs.findIndex(([key]) => key === k);
    if (i >= 0) this.pairs.splice(i, 1);
    this.pairs.push([k, v]);
  }
  lookup = (k: string): string | undefined => this.get(k);
  list(): string[] {
    return this.pairs.map(([k, v]) => `${k}=${v}`);
  }
  static fromList(list: readonly string[] | undefined): Env {
    const e = new Env();
    for (const kv of list ?? []) {
      const eq = kv.indexOf("=");
      e.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? "" : kv.slice(eq + 1));
    }
    return e;
  }
}

interface StageDef {
  index: number;
  stage: Stage;
  /** display name: `AS` name, `stage-N`, or "" when the Dockerfile has one stage */
  display: string;
  baseName: string;
  explicitPlatform: Platform | undefined;
  base: StageDef | undefined;
  /** global ARGs its FROM line used */
  fromArgs: Set<string>;
}

interface StageState {
  def: StageDef;
  platform: Platform;
  fs: Vertex | undefined;
  config: ImageConfig;
  env: Env;
  /** ARGs declared in this stage (and inherited from a base stage), for RUN's history */
  buildArgs: { key: string; value?: string }[];
  workdir: string;
  cmdSet: boolean;
  cmdIndex: number;
  cmdTotal: number;
  isOnBuild: boolean;
  baseHistoryLength: number;
  historyProducers: (string | undefined)[];
  /** ONBUILD commands of this stage (triggers for stages built FROM it) */
  onbuild: Command[];
  outline: OutlineCapture;
  /** the stage this one is built FROM */
  parent: StageState | undefined;
  lint: StageLintState;
}

interface ArgInfo {
  name: string;
  value: string;
  description: string;
  line: number;
  /** global ARGs whose values this default expanded (used when this one is) */
  deps: Set<string>;
}

/** What `--call outline` reports, gathered per stage as BuildKit's outlineCapture. */
interface OutlineCapture {
  /** ARG definitions visible in the stage: global ones, then the stage's own with a value */
  allArgs: Map<string, ArgInfo>;
  usedArgs: Set<string>;
  secrets: Map<string, { required: boolean; line: number }>;
  ssh: Map<string, { required: boolean; line: number }>;
  /** stages this one copies or mounts from */
  deps: Set<StageState>;
}

function withoutCreated(config: ImageConfig): ImageConfig {
  const c = structuredClone(config);
  delete c.created;
  return c;
}

/**
 * BuildKit writes the target's platform into the config in containerd's normalized form, so an
 * arm64 base whose config says variant "v8" exports none, and an arm base without one gets "v7".
 */
function normalizeConfigPlatform(config: ImageConfig): void {
  const p = normalize({
    os: config.os,
    architecture: config.architecture,
    variant: config.variant,
    osVersion: config["os.version"],
    osFeatures: config["os.features"],
  });
  config.os = p.os;
  config.architecture = p.architecture;
  if (p.variant) config.variant = p.variant;
  else delete config.variant;
  if (p.osFeatures) config["os.features"] = p.osFeatures;
  else delete config["os.features"];
}

function emptyImage(p: Platform): ImageConfig {
  const c: ImageConfig = {
    architecture: p.architecture,
    os: p.os,
    config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [] },
    history: [],
  };
  if (p.variant) c.variant = p.variant;
  return c;
}

function uppercaseCmd(s: string): string {
  const sp = s.indexOf(" ");
  return sp < 0 ? s.toUpperCase() : s.slice(0, sp).toUpperCase() + s.slice(sp);
}

/**
 * `->arm64` when the stage runs on one platform but builds for another (TARGET* in its env):
 * a parseable TARGETPLATFORM wins, else TARGETOS/ARCH/VARIANT fill in the stage's platform.
 */
function formatTargetPlatform(base: Platform, env: Env): string {
  let target: Platform | undefined;
  let partial: Platform | undefined;
  for (const [k, v] of env.pairs) {
    if (k === "TARGETPLATFORM") {
      try {
        target = parse(v);
        break;
      } catch {
        continue;
      }
    }
    if (k === "TARGETOS" || k === "TARGETARCH" || k === "TARGETVARIANT") {
      partial ??= { os: "", architecture: "" };
      if (k === "TARGETOS") partial.os = v;
      else if (k === "TARGETARCH") partial.architecture = v;
      else partial.variant = v || undefined;
    }
  }
  target ??= partial && {
    os: partial.os || base.os,
    architecture: partial.architecture || base.architecture,
    variant: partial.variant,
  };
  if (!target) return "";
  const p = normalize(target);
  if (p.os === base.os && p.architecture !== base.architecture) {
    return "->" + p.architecture + (p.variant ? `/${p.variant}` : "");
  }
  if (p.os !== base.os) return "->" + formatAll(p);
  return "";
}

/** Absolute, cleaned destination relative to the working directory; a trailing slash is kept. */
export function pathRelativeToWorkdir(workdir: string, p: string): string {
  const keepSlash = p.endsWith("/") || p === "." || p === "";
  const rel = p === "." || p === "" ? "./" : p;
  const joined = posix.isAbsolute(rel) ? posix.normalize(rel) : posix.join(workdir, rel);
  const clean = joined.length > 1 ? joined.replace(/\/+$/, "") : joined;
  return keepSlash && clean !== "/" ? clean + "/" : clean;
}

function normalizeWorkdir(current: string, p: string): string {
  const joined = posix.isAbsolute(p) ? p : posix.join(current || "/", p);
  const clean = posix.normalize(joined);
  return clean.length > 1 ? clean.replace(/\/+$/, "") : clean;
}

/**
 * Ports as `port/proto` (BuildKit's parsePort): `[ip:][hostPort:]port[-end][/proto]`, ranges
 * expand, the protocol is lower-cased (tcp when empty), host parts are checked then dropped.
 */
function parsePorts(
  raw: string,
  lint: (parts: { ip: string; hostPort: string; proto: string }) => void,
): string[] {
  const bad = (message: string): never => {
    throw new UnplacedError(DockerfileErrorCode.arguments, message, { needle: raw });
  };
  const parts = raw.split(":");
  const containerPart = parts[parts.length - 1]!;
  const hostPort = parts.length >= 2 ? parts[parts.length - 2]! : "";
  let ip = parts.length >= 3 ? parts.slice(0, -2).join(":") : "";
  const slash = containerPart.indexOf("/");
  const port = slash < 0 ? containerPart : containerPart.slice(0, slash);
  const proto = slash < 0 ? "" : containerPart.slice(slash + 1);
  if (port === "") bad(`invalid port: ${JSON.stringify(raw)}: no port specified`);
  lint({ ip, hostPort, proto });
  if (!["", "tcp", "udp", "sctp"].includes(proto.toLowerCase())) {
    bad(`invalid port: ${JSON.stringify(raw)}: invalid proto: ${proto}`);
  }
  if (ip.startsWith("[") && ip.endsWith("]")) ip = ip.slice(1, -1);
  if (ip !== "" && isIP(ip) === 0) bad(`invalid IP address: ${ip}`);
  const range = (s: string): [number, number] | undefined => {
    const num = (n: string): number | undefined =>
      /^[+-]?\d+$/.test(n) && Number(n) >= 0 && Number(n) <= 65535 ? Number(n) : undefined;
    const dash = s.indexOf("-");
    const start = num(dash < 0 ? s : s.slice(0, dash));
    if (start === undefined) return undefined;
    if (dash < 0 || s.slice(0, dash) === s.slice(dash + 1)) return [start, start];
    const end = num(s.slice(dash + 1));
    return end === undefined || end < start ? undefined : [start, end];
  };
  const [start, end] = range(port) ?? bad(`invalid containerPort: ${port}`);
  if (hostPort !== "") {
    const [hs, he] = range(hostPort) ?? bad(`invalid hostPort: ${hostPort}`);
    if (end - start !== he - hs && end !== start) {
      bad(`invalid ranges specified for container and host Ports: ${port} and ${hostPort}`);
    }
  }
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto.toLowerCase() || "tcp"}`);
  return out;
}

const SIGNALS = new Set([
  ..."ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX".split(
    " ",
  ),
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${i + 1}`),
]);

/** moby/sys/signal.ParseSignal on Linux: any non-zero integer, or a name with optional SIG. */
function checkSignal(sig: string): void {
  if (
    /^[+-]?\d+$/.test(sig) ? Number(sig) !== 0 : SIGNALS.has(sig.toUpperCase().replace(/^SIG/, ""))
  )
    return;
  throw new UnplacedError(DockerfileErrorCode.arguments, `invalid signal: ${sig}`, {
    needle: sig,
    hint: "use a signal name like SIGTERM or a number",
  });
}

export async function convertDockerfile(
  df: Dockerfile,
  opts: ConvertOptions,
): Promise<ConvertResult> {
  return new Converter(df, opts).run();
}

class Converter {
  private readonly lex: ShellLex;
  private readonly globalArgs = new Env();
  private readonly declaredArgs = new Set<string>();
  private readonly defs: StageDef[] = [];
  private readonly states = new Map<string, Promise<StageState>>();
  private readonly warnings: ConvertWarning[] = [];
  private readonly vertexStages = new Map<string, string>();
  private readonly contextVertices = new Map<string, Vertex>();
  private readonly targetName: string;
  /** global ARGs for the outline, by name */
  private readonly metaArgInfo = new Map<string, ArgInfo>();
  private lint = new Linter({ skipAll: false, skip: new Set(), error: false });

  constructor(
    private readonly df: Dockerfile,
    private readonly o: ConvertOptions,
  ) {
    this.lex = new ShellLex({ escapeToken: df.escapeToken });
    const last = df.stages[df.stages.length - 1];
    this.targetName = o.target ?? last?.name ?? "";
  }

  private fail(loc: { startLine: number; endLine: number }, e: unknown): never {
    throw placeError(e, this.df.source, loc.startLine, loc.endLine);
  }

  /** A RUN needing an entitlement the build was not given fails on its line. */
  private requireEntitlement(needed: boolean, e: Entitlement, needle: string): void {
    if (!needed || this.o.entitlements?.has(e)) return;
    throw new UnplacedError("E_ENTITLEMENT", `${e} is not allowed`, {
      needle,
      hint: entitlementHint(e),
    });
  }

  private warn(message: string, line?: number): void {
    this.warnings.push({
      message,
      location: line === undefined ? undefined : { file: this.df.file, line },
    });
  }

  async run(): Promise<ConvertResult> {
    if (this.df.stages.length === 0) {
      throw new KilnError(
        "E_DOCKERFILE_STRUCTURE",
        `${this.df.file}: the file has no FROM instruction`,
        {
          hint: "a Dockerfile needs at least one FROM line",
        },
      );
    }
    this.startLint();
    this.initGlobalArgs();
    this.defineStages();
    const target = this.findTarget();
    const st = await this.stageState(target, undefined);
    this.finishLint();
    this.warnUnusedArgs();
    const config = structuredClone(st.config);
    config.config ??= {};
    if (Object.keys(this.o.labels).length > 0) {
      config.config.Labels = { ...config.config.Labels, ...this.o.labels };
    }
    sortMapKeys(config.config);
    let platform = st.platform;
    if (!this.o.implicitTarget) {
      const t = this.o.targetPlatform;
      const sameOsArch = t.os === config.os && t.architecture === config.architecture;
      config.os = t.os;
      config.architecture = t.architecture;
      if (t.variant || !sameOsArch) {
        if (t.variant) config.variant = t.variant;
        else delete config.variant;
      }
      if (t.osVersion || !sameOsArch) {
        if (t.osVersion) config["os.version"] = t.osVersion;
        else delete config["os.version"];
      }
      if (t.osFeatures) config["os.features"] = [...t.osFeatures];
      platform = t;
    }
    normalizeConfigPlatform(config);
    return {
      root: st.fs,
      platform: normalize(platform),
      config,
      baseHistoryLength: st.baseHistoryLength,
      historyProducers: st.historyProducers,
      vertexStages: this.vertexStages,
      warnings: this.warnings,
      checks: this.lint.warnings,
      outline: this.outline(st),
    };
  }

  private startLint(): void {
    try {
      this.lint = new Linter(lintConfig(this.df, this.o.buildArgs.BUILDKIT_DOCKERFILE_CHECK));
    } catch (e) {
      const line = this.df.directives.find((d) => d.name === "check")?.line ?? 1;
      this.fail({ startLine: line, endLine: line }, e);
    }
    lintDockerfile(this.df, this.lint);
  }

  /** Findings become warnings; with check=error=true they fail the build before it runs. */
  private finishLint(): void {
    for (const f of this.lint.warnings) this.warn(`${f.rule}: ${f.message}`, f.line);
    if (this.o.checkOnly) return;
    const failed = this.lint.error(this.df.file);
    if (failed) this.fail({ startLine: failed.line, endLine: failed.line }, failed.error);
  }

  /** BuildKit's dispatchState.Outline: used args, secrets and ssh of the target and its deps. */
  private outline(target: StageState): Outline {
    const out: Outline = { args: [], secrets: [], ssh: [] };
    const name = target.def.stage.name;
    if (name) out.name = name;
    const description = docComment(target.def.stage.comments, name);
    if (description) out.description = description;
    const visitedArgs = new Set<string>();
    const visitedSecrets = new Set<string>();
    const visitedSsh = new Set<string>();
    const seen = new Set<StageState>();
    const walk = (st: StageState): void => {
      if (seen.has(st)) return;
      seen.add(st);
      const o = st.outline;
      // an arg used makes the global args its default expanded used too
      const mark = (keys: Iterable<string>, visited: Set<string>): void => {
        for (const k of keys) {
          if (visited.has(k)) continue;
          visited.add(k);
          mark(o.allArgs.get(k)?.deps ?? [], visited);
          o.usedArgs.add(k);
        }
      };
      mark([...o.usedArgs], new Set());
      for (const k of o.usedArgs) {
        const a = o.allArgs.get(k);
        if (!a || visitedArgs.has(k)) continue;
        visitedArgs.add(k);
        out.args.push({
          name: a.name,
          line: a.line,
          ...(a.value ? { value: a.value } : {}),
          ...(a.description ? { description: a.description } : {}),
        });
      }
      for (const [k, v] of o.secrets) {
        if (visitedSecrets.has(k)) continue;
        visitedSecrets.add(k);
        out.secrets.push({ name: k, line: v.line, ...(v.required ? { required: true } : {}) });
      }
      for (const [k, v] of o.ssh) {
        if (visitedSsh.has(k)) continue;
        visitedSsh.add(k);
        out.ssh.push({ name: k, line: v.line, ...(v.required ? { required: true } : {}) });
      }
      if (st.parent) walk(st.parent);
      for (const d of o.deps) walk(d);
    };
    walk(target);
    const byLine = (a: { line: number }, b: { line: number }): number => a.line - b.line;
    out.args.sort(byLine);
    out.secrets.sort(byLine);
    out.ssh.sort(byLine);
    return out;
  }

  /** The automatic platform ARGs (and TARGETSTAGE), build args applied. */
  private platformArgs(): [string, string][] {
    const bp = this.o.buildPlatform;
    const tp = this.o.targetPlatform;
    const defaults: [string, string][] = [
      ["BUILDPLATFORM", format(bp)],
      ["BUILDOS", bp.os],
      ["BUILDOSVERSION", bp.osVersion ?? ""],
      ["BUILDARCH", bp.architecture],
      ["BUILDVARIANT", bp.variant ?? ""],
      ["TARGETPLATFORM", formatAll(tp)],
      ["TARGETOS", tp.os],
      ["TARGETOSVERSION", tp.osVersion ?? ""],
      ["TARGETARCH", tp.architecture],
      ["TARGETVARIANT", tp.variant ?? ""],
      ["TARGETSTAGE", this.targetName || "default"],
    ];
    return defaults.map(([k, v]) => [k, this.o.buildArgs[k] ?? v]);
  }

  private initGlobalArgs(): void {
    for (const [k, v] of this.platformArgs()) this.globalArgs.set(k, v);
    for (const cmd of this.df.metaArgs) {
      for (const a of cmd.args) {
        this.declaredArgs.add(a.key);
        let value: string | undefined;
        let deps = new Set<string>();
        if (Object.prototype.hasOwnProperty.call(this.o.buildArgs, a.key))
          value = this.o.buildArgs[a.key];
        else if (a.value !== undefined) {
          let res;
          try {
            res = this.lex.processWordWithMatches(a.value, this.globalArgs.lookup);
          } catch (e) {
            this.fail(cmd.location, e);
          }
          value = res.result;
          deps = res.matched;
          // `ARG A=$A-x` depends on what the earlier A depended on
          if (deps.delete(a.key)) {
            for (const d of this.metaArgInfo.get(a.key)?.deps ?? []) deps.add(d);
          }
        }
        if (value !== undefined) this.globalArgs.set(a.key, value);
        this.metaArgInfo.set(a.key, {
          name: a.key,
          value: value ?? "",
          description: docComment(cmd.comments, a.key),
          line: cmd.location.startLine,
          deps,
        });
      }
    }
  }

  /** Global ARGs a FROM line's expansion matched: the stage uses them (outline). */
  private expandFrom(
    loc: { startLine: number; endLine: number },
    word: string,
    used: Set<string>,
  ): WordMatch & { unmatched: Set<string> } {
    let res;
    try {
      res = this.lex.processWordWithMatches(word, this.globalArgs.lookup);
    } catch (e) {
      this.fail(loc, e);
    }
    for (const k of res.matched) used.add(k);
    return res;
  }

  private expand(loc: { startLine: number; endLine: number }, word: string, env: Env): string {
    try {
      return this.lex.processWord(word, env.lookup);
    } catch (e) {
      this.fail(loc, e);
    }
  }

  /**
   * A word of command `c` expanded in stage `st`'s environment; a variable it uses that is
   * neither set nor a declared ARG is an UndefinedVar finding.
   */
  private expandIn(st: StageState, c: Command, word: string): string {
    let res;
    try {
      res = this.lex.processWordWithMatches(word, st.env.lookup);
    } catch (e) {
      this.fail(c.location, e);
    }
    const declared = new Set([...st.buildArgs.map((a) => a.key), ...NON_ENV_ARGS]);
    const unset = [...res.unmatched].filter((v) => !declared.has(v));
    lintUndefinedVars(
      this.lint,
      c,
      unset,
      st.env.pairs.map(([k]) => k),
    );
    return res.result;
  }

  private expandWords(
    loc: { startLine: number; endLine: number },
    word: string,
    env: Env,
  ): string[] {
    try {
      return this.lex.processWords(word, env.lookup);
    } catch (e) {
      this.fail(loc, e);
    }
  }

  /**
   * BuildKit checks that every FROM still names a valid image with the global ARGs' defaults
   * alone (no build args), so a build does not depend on a --build-arg to be valid.
   */
  private lintDefaultBaseNames(): void {
    const env = new Env();
    for (const [k, v] of this.platformArgs()) env.set(k, v);
    try {
      for (const cmd of this.df.metaArgs)
        for (const a of cmd.args)
          if (a.value !== undefined) env.set(a.key, this.lex.processWord(a.value, env.lookup));
      for (const stage of this.df.stages) {
        const name = this.lex.processWord(stage.baseName, env.lookup);
        try {
          parseReference(name);
        } catch {
          this.lint.run(
            "InvalidDefaultArgInFrom",
            stage.location.startLine,
            RULES.InvalidDefaultArgInFrom(stage.baseName),
          );
        }
      }
    } catch {
      // an expansion error: the build reports it where it happens
    }
  }

  private defineStages(): void {
    this.lintDefaultBaseNames();
    const byName = new Map<string, StageDef>();
    this.df.stages.forEach((stage, index) => {
      const fromArgs = new Set<string>();
      const res = this.expandFrom(stage.location, stage.baseName, fromArgs);
      if (res.result === "") {
        const vars = [...res.unmatched];
        this.fail(
          stage.location,
          new UnplacedError(
            DockerfileErrorCode.arguments,
            `base name (${stage.baseName}) should not be blank`,
            {
              needle: stage.baseName,
              hint: vars.length
                ? `${vars.join(", ")} ${vars.length > 1 ? "are" : "is"} empty: give it a default (ARG ${vars[0]}=…) before the first FROM or pass --build-arg ${vars[0]}=…`
                : undefined,
            },
          ),
        );
      }
      let explicitPlatform: Platform | undefined;
      let platformMatch: WordMatch | undefined;
      if (stage.platform !== undefined) {
        platformMatch = this.expandFrom(stage.location, stage.platform, fromArgs);
        const p = platformMatch.result;
        if (p === "") {
          this.fail(
            stage.location,
            new UnplacedError(
              DockerfileErrorCode.arguments,
              `empty platform value from expression ${stage.platform}`,
              {
                needle: stage.platform,
              },
            ),
          );
        }
        try {
          explicitPlatform = parseNormalized(p);
        } catch (e) {
          this.fail(stage.location, e);
        }
      }
      lintFrom(this.lint, stage, res, platformMatch, {
        keys: [...new Set([...this.metaArgInfo.keys(), ...this.globalArgs.pairs.map(([k]) => k)])],
        targetPlatform: this.globalArgs.get("TARGETPLATFORM") ?? "",
      });
      const def: StageDef = {
        index,
        stage,
        display: stage.name ?? `stage-${index}`,
        baseName: res.result,
        explicitPlatform,
        // stage names are lower-cased when declared, but FROM matches them as written
        // (BuildKit addState): `FROM Builder` is an image name, and an invalid one
        base: byName.get(res.result),
        fromArgs,
      };
      if (!def.base && def.baseName !== SCRATCH) this.checkBaseName(def, byName);
      this.defs.push(def);
      if (stage.name) byName.set(stage.name.toLowerCase(), def);
    });
    for (const stage of this.df.stages) {
      for (const c of stage.commands) if (c.kind === "copy" && c.from !== "") this.checkCopyFrom(c);
    }
    if (this.defs.length === 1 && !this.referencesOtherSources()) this.defs[0]!.display = "";
  }

  /**
   * BuildKit parses every stage's base image name, reachable or not, before it builds anything;
   * a name that differs from a stage only in case gets a hint, since COPY --from= and --target
   * match stages case-insensitively but FROM does not.
   */
  private checkBaseName(def: StageDef, byName: Map<string, StageDef>): void {
    try {
      parseReference(def.baseName);
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      const stage = byName.get(def.baseName.toLowerCase());
      this.fail(
        def.stage.location,
        new UnplacedError(e.code, `failed to parse stage name: ${e.message}`, {
          needle: def.stage.baseName,
          hint: stage
            ? `FROM names a stage exactly as declared, and stage names are lower-cased: write FROM ${stage.stage.name}`
            : e.hint,
        }),
      );
    }
  }

  /**
   * Whether a COPY --from or RUN --mount names something that is not a stage. BuildKit makes
   * each such reference (and every mount without from=, as "scratch") a stage of its own before
   * it decides that a one-stage Dockerfile shows no stage name, so those steps read
   * `[stage-0 2/3] …`; kiln names steps the same way.
   */
  private referencesOtherSources(): boolean {
    return this.df.stages.some((stage) =>
      stage.commands.some((c) => {
        if (c.kind === "copy" && c.from !== "") {
          return !/^\d+$/.test(c.from) && !this.findStage(c.from);
        }
        if (c.kind !== "run") return false;
        return c.mounts.some((raw) => {
          let from = "scratch";
          for (const field of parseCsvFields(raw, "mounts")) {
            const eq = field.indexOf("=");
            if (eq > 0 && field.slice(0, eq).toLowerCase() === "from" && field.length > eq + 1)
              from = field.slice(eq + 1);
          }
          return !this.findStage(from);
        });
      }),
    );
  }

  /** BuildKit checks every stage's COPY --from up front: stages are not chosen by variables. */
  private checkCopyFrom(c: CopyCommand): void {
    let plain: string;
    try {
      plain = this.lex.processWord(c.from, () => undefined);
    } catch (e) {
      this.fail(c.location, e);
    }
    if (plain !== c.from) {
      this.fail(
        c.location,
        new UnplacedError(
          DockerfileErrorCode.flagValue,
          "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
          {
            needle: c.from,
            hint: "add `ARG X` before the first FROM, `FROM $X AS src`, then COPY --from=src",
          },
        ),
      );
    }
  }

  private findStage(name: string): StageDef | undefined {
    const lower = name.toLowerCase();
    return this.defs.find((d) => d.stage.name === lower);
  }

  private findTarget(): StageDef {
    if (this.o.target === undefined) return this.defs[this.defs.length - 1]!;
    const d = this.findStage(this.o.target);
    if (d) return d;
    const names = this.defs.map((s) => s.stage.name).filter((n): n is string => n !== undefined);
    throw new KilnError(
      "E_TARGET_NOT_FOUND",
      `target stage ${JSON.stringify(this.o.target)} could not be found`,
      {
        hint: names.length
          ? `stages in ${this.df.file}: ${names.join(", ")}`
          : `${this.df.file} has no named stages`,
      },
    );
  }

  /** A stage's state, converted once per platform it is built for. */
  private stageState(def: StageDef, platformOverride: Platform | undefined): Promise<StageState> {
    const key = `${def.index} ${platformOverride ? formatAll(platformOverride) : ""}`;
    let p = this.states.get(key);
    if (!p) {
      p = this.dispatchStage(def, platformOverride);
      this.states.set(key, p);
    }
    return p;
  }

  private contextVertex(name: string): Vertex {
    let v = this.contextVertices.get(name);
    if (!v) {
      const ctx = this.o.contexts.get(name);
      if (!ctx) throw new KilnError("E_CONTEXT", `build context ${name} was not provided`);
      v = vertex(
        { kind: "local", name, dir: ctx.dir, excludePatterns: ctx.excludePatterns },
        [],
        undefined,
        name === "context" ? "[internal] load build context" : `[context ${name}] load from client`,
      );
      this.contextVertices.set(name, v);
    }
    return v;
  }

  private prefix(st: StageState, str: string, platform: Platform, env: Env | undefined): string {
    if (st.cmdTotal === 0) return str;
    let out = "[";
    if (this.o.multiPlatform)
      out += formatAll(platform) + (env ? formatTargetPlatform(platform, env) : "") + " ";
    if (st.def.display) out += st.def.display + " ";
    st.cmdIndex++;
    const width = 1 + Math.floor(Math.log10(st.cmdTotal));
    out += `${String(st.cmdIndex).padStart(width, " ")}/${st.cmdTotal}] `;
    if (st.isOnBuild) out += "ONBUILD ";
    return out + str;
  }

  private commit(
    st: StageState,
    msg: string,
    producer: Vertex | undefined,
    mark = producer !== undefined,
  ): void {
    const entry: HistoryEntry = {
      created_by: mark ? `${msg} # buildkit` : msg,
      comment: HISTORY_COMMENT,
    };
    if (!producer) entry.empty_layer = true;
    st.config.history = [...(st.config.history ?? []), entry];
    st.historyProducers.push(producer?.digest);
  }

  private track(st: StageState, v: Vertex): Vertex {
    if (st.def.stage.name) this.vertexStages.set(v.digest, st.def.stage.name);
    return v;
  }

  /** The image a name stands for: a `docker-image://` named context replaces it (BuildKit). */
  private imageFor(name: string): string {
    const contexts = this.o.imageContexts;
    if (!contexts || contexts.size === 0) return name;
    const direct = contexts.get(name);
    if (direct !== undefined) return direct;
    // `FROM alpine` also matches a context named docker.io/library/alpine:latest and back
    const full = (n: string): string | undefined => {
      try {
        return formatReference(parseReference(n));
      } catch {
        return undefined;
      }
    };
    const want = full(name);
    for (const [k, v] of contexts) if (want !== undefined && full(k) === want) return v;
    return name;
  }

  private async dispatchStage(def: StageDef, override: Platform | undefined): Promise<StageState> {
    const loc = def.stage.location;
    const requested = override ?? def.explicitPlatform;
    let st: StageState;
    if (def.base) {
      const parent = await this.stageState(def.base, requested);
      st = {
        def,
        platform: parent.platform,
        fs: parent.fs,
        config: structuredClone(parent.config),
        env: parent.env.clone(),
        buildArgs: [...parent.buildArgs],
        workdir: parent.workdir,
        cmdSet: false,
        cmdIndex: 0,
        cmdTotal: 0,
        isOnBuild: false,
        baseHistoryLength: parent.baseHistoryLength,
        historyProducers: [...parent.historyProducers],
        onbuild: [],
        outline: this.newOutline(def),
        parent,
        lint: { used: new Map(), workdirSet: parent.lint.workdirSet },
      };
      if (st.config.config) delete st.config.config.OnBuild;
      st.onbuild = parent.onbuild;
      st.cmdTotal = countSteps(def.stage.commands);
    } else {
      // BuildKit builds `FROM --platform=X scratch` for the target platform, ignoring X; kiln
      // honours X like for any other base, so a $BUILDPLATFORM scratch stage is shared.
      const platform = requested ?? this.o.targetPlatform;
      st = {
        def,
        platform,
        fs: undefined,
        config: emptyImage(platform),
        env: new Env(),
        buildArgs: [],
        workdir: "/",
        cmdSet: false,
        cmdIndex: 0,
        cmdTotal: 0,
        isOnBuild: false,
        baseHistoryLength: 0,
        historyProducers: [],
        onbuild: [],
        outline: this.newOutline(def),
        parent: undefined,
        lint: { used: new Map(), workdirSet: false },
      };
      st.cmdTotal = countSteps(def.stage.commands);
      if (def.baseName !== SCRATCH) {
        let resolved: ResolvedBaseImage;
        try {
          resolved = await this.o.resolveImage(this.imageFor(def.baseName), platform);
        } catch (e) {
          this.fail(loc, e);
        }
        st.config = withoutCreated(resolved.config);
        st.config.config ??= {};
        st.baseHistoryLength = st.config.history?.length ?? 0;
        this.checkBasePlatform(def, platform, resolved.config);
        const triggers = st.config.config.OnBuild ?? [];
        delete st.config.config.OnBuild;
        st.onbuild = triggers.map((t) => this.parseTrigger(def, t));
        if (resolved.config.rootfs.diff_ids.length > 0) {
          st.cmdTotal++;
          st.fs = this.track(
            st,
            vertex(
              { kind: "image", ref: resolved.ref, manifestDigest: resolved.manifestDigest },
              [],
              platform,
              this.prefix(st, `FROM ${resolved.ref}`, platform, undefined),
            ),
          );
        }
      }
    }
    const commands = [
      ...st.onbuild.map((c) => ({ c, onbuild: true })),
      ...def.stage.commands.map((c) => ({ c, onbuild: false })),
    ];
    // triggers run before the stage's own commands and are numbered after FROM was named;
    // BuildKit adds every trigger to the total, not only the ones that get a number
    st.cmdTotal += st.onbuild.length;
    st.onbuild = def.stage.commands.flatMap((c) =>
      c.kind === "onbuild" && c.trigger ? [c.trigger] : [],
    );
    // make sure that PATH is always set, and the base's env, workdir and user apply
    st.config.config ??= {};
    const cc = st.config.config;
    if (!Env.fromList(cc.Env).get("PATH") && st.platform.os !== "windows") {
      cc.Env = [...(cc.Env ?? []), `PATH=${DEFAULT_PATH}`];
    }
    if (!def.base) {
      st.env = Env.fromList(cc.Env);
      st.workdir = cc.WorkingDir ? normalizeWorkdir("/", cc.WorkingDir) : "/";
    } else {
      // BuildKit re-applies the config's Env over the inherited state, so a name the parent
      // declared as both ARG and ENV reaches the child's RUN with its ENV value
      for (const [k, v] of Env.fromList(cc.Env).pairs) st.env.set(k, v);
    }
    for (const { c, onbuild } of commands) {
      st.isOnBuild = onbuild;
      try {
        await this.dispatch(st, c);
      } catch (e) {
        this.fail(c.location, e);
      }
    }
    st.isOnBuild = false;
    return st;
  }

  private newOutline(def: StageDef): OutlineCapture {
    return {
      allArgs: new Map(this.metaArgInfo),
      usedArgs: new Set(def.fromArgs),
      secrets: new Map(),
      ssh: new Map(),
      deps: new Set(),
    };
  }

  private parseTrigger(def: StageDef, expression: string): Command {
    try {
      const parsed = parseDockerfile(`FROM scratch\n${expression}\n`, {
        file: `ONBUILD of ${def.baseName}`,
      });
      const cmd = parsed.stages[0]?.commands[0];
      if (!cmd || parsed.stages[0]!.commands.length !== 1)
        throw new Error("onbuild trigger should be a single expression");
      return { ...cmd, location: def.stage.location };
    } catch (e) {
      this.fail(def.stage.location, e);
    }
  }

  private checkBasePlatform(def: StageDef, expected: Platform, config: ImageConfig): void {
    if (!config.architecture || !config.os) return;
    const got = normalize({
      os: config.os,
      architecture: config.architecture,
      variant: config.variant,
    });
    const want = normalize(expected);
    if (got.os !== want.os || got.architecture !== want.architecture) {
      this.lint
        .for(def.stage.comments)
        .run(
          "InvalidBaseImagePlatform",
          def.stage.location.startLine,
          RULES.InvalidBaseImagePlatform(def.baseName, formatAll(want), formatAll(got)),
        );
    }
  }

  private warnUnusedArgs(): void {
    const automatic = /^(BUILD|TARGET)(PLATFORM|OS|ARCH|VARIANT|OSVERSION|STAGE)$/;
    const unused = Object.keys(this.o.buildArgs)
      .filter((k) => !this.declaredArgs.has(k) && !BUILTIN_ARGS.has(k) && !automatic.test(k))
      .sort();
    if (unused.length) this.warn(`One or more build-args [${unused.join(" ")}] were not consumed`);
  }

  private async dispatch(st: StageState, c: Command): Promise<void> {
    const cc = st.config.config!;
    const env = st.env;
    lintCommand(this.lint, c, st.lint, {
      shell: cc.Shell,
      workdir: c.kind === "workdir" ? this.expand(c.location, c.path, env) : undefined,
    });
    switch (c.kind) {
      case "env": {
        const pairs = c.pairs.map((p) => ({
          key: p.key,
          value: this.expandIn(st, c, p.value),
        }));
        for (const p of pairs) {
          st.env.set(p.key, p.value);
          cc.Env = addEnv(cc.Env, p.key, p.value);
        }
        this.commit(st, "ENV " + pairs.map((p) => `${p.key}=${p.value}`).join(" "), undefined);
        return;
      }
      case "arg":
        this.dispatchArg(st, c);
        return;
      case "label": {
        const pairs = c.pairs.map((p) => ({
          key: this.expandIn(st, c, p.key),
          value: this.expandIn(st, c, p.value),
        }));
        cc.Labels = { ...cc.Labels };
        for (const p of pairs) cc.Labels[p.key] = p.value;
        this.commit(st, "LABEL " + pairs.map((p) => `${p.key}=${p.value}`).join(" "), undefined);
        return;
      }
      case "maintainer":
        st.config.author = c.maintainer;
        this.commit(st, `MAINTAINER ${c.maintainer}`, undefined);
        return;
      case "workdir":
        this.dispatchWorkdir(st, c.code, this.expandIn(st, c, c.path));
        return;
      case "user": {
        const user = this.expandIn(st, c, c.user);
        cc.User = user;
        this.commit(st, `USER ${user}`, undefined);
        return;
      }
      case "expose": {
        const ports = c.ports
          .flatMap((p) => this.expandWords(c.location, p, env))
          .flatMap((p) =>
            parsePorts(p, (parts) => {
              lintExposePort(this.lint, c, p, parts);
            }),
          );
        cc.ExposedPorts = { ...cc.ExposedPorts };
        for (const p of ports) cc.ExposedPorts[p] = {};
        this.commit(st, `EXPOSE ${goList(ports)}`, undefined);
        return;
      }
      case "volume": {
        const vols = c.volumes.map((v) => this.expandIn(st, c, v));
        cc.Volumes = { ...cc.Volumes };
        for (const v of vols) {
          if (v === "")
            throw new UnplacedError(
              DockerfileErrorCode.arguments,
              "VOLUME specified can not be an empty string",
            );
          cc.Volumes[v] = {};
        }
        this.commit(st, `VOLUME ${goList(vols)}`, undefined);
        return;
      }
      case "stopsignal": {
        const sig = this.expandIn(st, c, c.signal);
        checkSignal(sig);
        cc.StopSignal = sig;
        this.commit(st, `STOPSIGNAL ${sig}`, undefined);
        return;
      }
      case "shell":
        cc.Shell = [...c.shell];
        this.commit(st, `SHELL ${goList(c.shell)}`, undefined);
        return;
      case "cmd": {
        const args = c.prependShell ? withShell(cc, c.cmdLine) : [...c.cmdLine];
        // `CMD []` clears it: an empty list is omitted from the config (Go's omitempty)
        if (args.length > 0) cc.Cmd = args;
        else delete cc.Cmd;
        cc.ArgsEscaped = true;
        st.cmdSet = true;
        this.commit(st, `CMD ${goQuoted(args)}`, undefined);
        return;
      }
      case "entrypoint": {
        const args = c.prependShell ? withShell(cc, c.cmdLine) : [...c.cmdLine];
        if (args.length > 0) cc.Entrypoint = args;
        else delete cc.Entrypoint;
        // an inherited CMD makes no sense with a new ENTRYPOINT (omitted, as Go's omitempty)
        if (!st.cmdSet) delete cc.Cmd;
        this.commit(st, `ENTRYPOINT ${goQuoted(args)}`, undefined);
        return;
      }
      case "healthcheck": {
        const h = c.health;
        const hc: NonNullable<ContainerConfig["Healthcheck"]> = { Test: [...h.test] };
        if (h.interval) hc.Interval = h.interval;
        if (h.timeout) hc.Timeout = h.timeout;
        if (h.startPeriod) hc.StartPeriod = h.startPeriod;
        if (h.startInterval) hc.StartInterval = h.startInterval;
        if (h.retries) hc.Retries = h.retries;
        cc.Healthcheck = hc;
        this.commit(
          st,
          `HEALTHCHECK {Test:${goList(h.test)} Interval:${goDuration(h.interval)} Timeout:${goDuration(h.timeout)} StartPeriod:${goDuration(h.startPeriod)} StartInterval:${goDuration(h.startInterval)} Retries:${h.retries}}`,
          undefined,
        );
        return;
      }
      case "onbuild":
        cc.OnBuild = [...(cc.OnBuild ?? []), c.expression];
        return;
      case "run":
        return this.dispatchRun(st, c);
      case "copy":
      case "add":
        return this.dispatchCopy(st, c);
    }
  }

  private dispatchArg(st: StageState, c: ArgCommand): void {
    const commitStrs: string[] = [];
    for (const a of c.args) {
      this.declaredArgs.add(a.key);
      const hasValue = Object.prototype.hasOwnProperty.call(this.o.buildArgs, a.key);
      let value: string | undefined = a.value;
      // `ARG X` without a default takes the global value (and its outline entry)
      const inherited = !hasValue && value === undefined;
      if (inherited) {
        value = this.globalArgs.get(a.key);
      } else if (hasValue) {
        value = this.o.buildArgs[a.key];
      } else if (value !== undefined) {
        value = this.expandIn(st, c, value);
      }
      if (value !== undefined && !NON_ENV_ARGS.has(a.key)) st.env.set(a.key, value);
      if (!inherited || value === undefined) {
        st.outline.allArgs.set(a.key, {
          name: a.key,
          value: value ?? "",
          description: docComment(c.comments, a.key),
          line: c.location.startLine,
          deps: new Set(),
        });
      }
      st.outline.usedArgs.add(a.key);
      st.buildArgs.push({ key: a.key, value });
      commitStrs.push(value === undefined ? a.key : `${a.key}=${value}`);
    }
    this.commit(st, "ARG " + commitStrs.join(" "), undefined);
  }

  private dispatchWorkdir(st: StageState, code: string, path: string): void {
    const cc = st.config.config!;
    const wd = normalizeWorkdir(cc.WorkingDir || "/", path);
    // BuildKit's NormalizePath only joins (and so cleans) a relative path: an absolute one goes
    // into the config and history as written ("/app/" stays "/app/")
    const shown = posix.isAbsolute(path) ? path : wd;
    cc.WorkingDir = shown;
    st.workdir = wd;
    if (wd === "/") {
      this.commit(st, `WORKDIR ${shown}`, undefined);
      return;
    }
    const user = cc.User;
    const action: FileAction = {
      action: "mkdir",
      path: wd,
      mode: 0o755,
      makeParents: true,
      ...(user ? { chown: splitChown(user) } : {}),
    };
    const name = this.prefix(
      st,
      uppercaseCmd(this.displayExpand(code, st.env, false)),
      st.platform,
      st.env,
    );
    const v = this.track(
      st,
      vertex(
        { kind: "file", actions: [action], dest: st.fs ? 0 : -1 },
        st.fs ? [st.fs] : [],
        st.platform,
        name,
      ),
    );
    st.fs = v;
    // a layer, but BuildKit's WORKDIR history line has no "# buildkit" mark
    this.commit(st, `WORKDIR ${shown}`, v, false);
  }

  /**
   * Step names with variables expanded (BuildKit's processCmdEnv). RUN keeps quotes and unset
   * variables as written (`raw`); COPY, ADD and WORKDIR go through the plain word lexer, so
   * their names lose quotes and unset variables, as BuildKit's do.
   */
  private displayExpand(code: string, env: Env, raw: boolean): string {
    try {
      const lex = raw
        ? new ShellLex({ escapeToken: this.df.escapeToken, rawQuotes: true, skipUnsetEnv: true })
        : this.lex;
      return lex.processWord(code, env.lookup);
    } catch {
      return code;
    }
  }

  /** The files of `--from` / `from=`: an earlier stage, a named context or an image. */
  private async sourceStage(
    from: string,
    st: StageState,
    loc: { startLine: number; endLine: number },
    mountTarget?: string,
  ): Promise<Vertex | undefined> {
    let def = this.findStage(from);
    if (!def && /^\d+$/.test(from)) {
      def = this.defs[Number(from)];
      if (!def)
        throw new UnplacedError(DockerfileErrorCode.arguments, `invalid stage index ${from}`, {
          needle: from,
        });
    }
    if (def) {
      if (def.index >= st.def.index) {
        throw new UnplacedError(
          DockerfileErrorCode.arguments,
          mountTarget === undefined
            ? `cannot copy from stage "${from}", it needs to be defined before current stage "${st.def.display}"`
            : `cannot mount from stage "${from}" to "${mountTarget}", stage needs to be defined before current command`,
          { needle: from },
        );
      }
      const dep = await this.stageState(def, undefined);
      st.outline.deps.add(dep);
      return dep.fs;
    }
    if (this.o.contexts.has(from)) return this.contextVertex(from);
    // An image reference: BuildKit makes it an unnamed stage of its own, which (having no
    // --platform) is resolved for the target platform even inside a $BUILDPLATFORM stage.
    const platform = this.o.targetPlatform;
    let resolved: ResolvedBaseImage;
    try {
      resolved = await this.o.resolveImage(this.imageFor(from), platform);
    } catch (e) {
      this.fail(loc, e);
    }
    if (resolved.config.rootfs.diff_ids.length === 0) return undefined;
    return vertex(
      { kind: "image", ref: resolved.ref, manifestDigest: resolved.manifestDigest },
      [],
      platform,
      `FROM ${resolved.ref}`,
    );
  }

  private async dispatchRun(st: StageState, c: RunCommand): Promise<void> {
    const cc = st.config.config!;
    let args = [...c.cmdLine];
    let display = c.code;
    const inputs: Vertex[] = [];
    const rootInput = st.fs;
    const mounts: ExecMount[] = [];
    const inputIndex = (v: Vertex | undefined): number => {
      if (!v) return -1;
      const i = inputs.findIndex((x) => x.digest === v.digest);
      if (i >= 0) return i;
      inputs.push(v);
      return inputs.length - 1;
    };
    if (rootInput) inputs.push(rootInput);
    if (c.files.length > 0) {
      const first = c.files[0]!;
      if (args.length === 1 && c.prependShell && parseHeredocWord(args[0]!) !== undefined) {
        let data = first.data;
        if (first.chomp) data = chompHeredocContent(data);
        if (st.platform.os !== "windows" && data.startsWith("#!")) {
          // a single heredoc with a shebang: write it to a file and run that
          const file = vertex(
            {
              kind: "file",
              dest: -1,
              actions: [{ action: "mkfile", path: `/${first.name}`, data, mode: 0o755 }],
            },
            [],
            st.platform,
            "preparing inline document",
          );
          const idx = inputIndex(file);
          mounts.push({
            type: "bind",
            target: "/dev/pipes/",
            input: idx,
            source: "/",
            readonly: true,
          });
          args = [posix.join("/dev/pipes/", first.name)];
        } else {
          args = [data];
        }
        display += ` (${summarizeHeredoc(first.data)})`;
      } else {
        args = [(args[0] ?? "") + c.files.map((f) => `\n${f.data}${f.name}`).join("")];
      }
    }
    if (c.prependShell) args = withShell(cc, args);
    const network = c.network !== "default" ? c.network : this.o.network;
    this.requireEntitlement(c.security === "insecure", "security.insecure", "--security");
    this.requireEntitlement(network === "host", "network.host", "--network");
    for (const d of c.devices) {
      // CDI device names: kiln registers no CDI devices, so every device is one the host
      // lacks, which BuildKit refuses when required and skips when optional (the default)
      if (d.required) {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `required device ${JSON.stringify(d.name)} is not registered: kiln has no CDI devices`,
          {
            needle: "--device",
            hint: "drop --device, or mark it optional: --device=NAME,required=false",
          },
        );
      }
      this.warn(
        `optional device ${JSON.stringify(d.name)} is not registered: skipped`,
        c.location.startLine,
      );
    }
    const secretEnvs = new Set<string>();
    let sshCount = 0;
    for (const raw of c.mounts) {
      const m = parseRunMount(raw, (w) => this.expandIn(st, c, w));
      const d = mountDefaults(m);
      // a relative target is joined to the workdir and cleaned; an absolute one stays as written
      let target = d.target ?? "";
      if (target && !posix.isAbsolute(target)) {
        target = posix.join("/", st.workdir, target).replace(/(.)\/+$/, "$1");
      }
      if (m.type !== "secret" && m.type !== "ssh" && posix.normalize(target) === "/") {
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          `invalid mount target ${JSON.stringify(target)}`,
          { needle: raw },
        );
      }
      switch (m.type) {
        case "bind": {
          const from =
            m.from === ""
              ? this.contextVertex("context")
              : await this.sourceStage(m.from, st, c.location, target);
          const idx = from ? inputIndex(from) : inputIndex(this.scratchDir(st));
          mounts.push({
            type: "bind",
            target,
            input: idx,
            source: posix.join("/", m.source),
            readonly: m.readOnly,
          });
          break;
        }
        case "cache": {
          const ns = this.o.buildArgs.BUILDKIT_CACHE_MOUNT_NS ?? "";
          const from =
            m.from === "" ? undefined : await this.sourceStage(m.from, st, c.location, target);
          mounts.push({
            type: "cache",
            target,
            id: `${ns}/${d.id}`,
            sharing: d.sharing,
            readonly: m.readOnly,
            ...(from ? { input: inputIndex(from), source: posix.join("/", m.source) } : {}),
            mode: d.mode ?? 0o755,
            uid: m.uid ?? 0,
            gid: m.gid ?? 0,
          });
          break;
        }
        case "tmpfs":
          mounts.push({ type: "tmpfs", target, ...(m.sizeLimit ? { size: m.sizeLimit } : {}) });
          break;
        case "secret":
          if (!st.outline.secrets.has(d.id)) {
            st.outline.secrets.set(d.id, { required: m.required, line: c.location.startLine });
          }
          if (m.env !== undefined) secretEnvs.add(m.env);
          mounts.push({
            type: "secret",
            id: d.id,
            ...(d.target !== undefined
              ? {
                  target: posix.isAbsolute(d.target)
                    ? d.target
                    : posix.join("/", st.workdir, d.target),
                }
              : {}),
            ...(m.env !== undefined ? { env: m.env } : {}),
            required: m.required,
            mode: d.mode ?? 0o400,
            uid: m.uid ?? 0,
            gid: m.gid ?? 0,
          });
          break;
        case "ssh": {
          const sshIndex = sshCount++;
          if (m.source !== "") {
            throw new UnplacedError(DockerfileErrorCode.flagValue, "ssh does not support source", {
              needle: raw,
            });
          }
          if (!st.outline.ssh.has(d.id)) {
            st.outline.ssh.set(d.id, { required: m.required, line: c.location.startLine });
          }
          mounts.push({
            type: "ssh",
            id: d.id,
            // LLB names a default socket by the RUN's ssh mounts so far: ssh_agent.0, .1, …
            target: d.target ?? `/run/buildkit/ssh_agent.${sshIndex}`,
            required: m.required,
            mode: d.mode ?? 0o600,
            uid: m.uid ?? 0,
            gid: m.gid ?? 0,
          });
          break;
        }
      }
    }
    // a secret exposed as an env var shows as **** in the step name, as in BuildKit
    const shownEnv = st.env.clone();
    for (const k of secretEnvs) shownEnv.set(k, "****");
    const name = this.prefix(
      st,
      uppercaseCmd(this.displayExpand(display, secretEnvs.size ? shownEnv : st.env, true)),
      st.platform,
      st.env,
    );
    const v = this.track(
      st,
      vertex(
        {
          kind: "exec",
          args,
          env: [
            ...st.env.list(),
            ...sshAuthSock(mounts, st.env),
            ...proxyEnvList(this.o.buildArgs),
          ],
          cwd: st.workdir,
          user: cc.User ?? "",
          network,
          ...(c.security === "insecure" ? { security: "insecure" as const } : {}),
          mounts,
          ...(this.o.extraHosts.length ? { extraHosts: this.o.extraHosts } : {}),
          // dockerui reads the sandbox hostname from this build arg
          ...(this.o.buildArgs.BUILDKIT_SANDBOX_HOSTNAME
            ? { hostname: this.o.buildArgs.BUILDKIT_SANDBOX_HOSTNAME }
            : {}),
        },
        inputs,
        st.platform,
        name,
      ),
    );
    st.fs = v;
    this.commit(st, "RUN " + runCommandString(args, st.buildArgs, st.env), v);
  }

  private scratchDir(st: StageState): Vertex {
    return vertex({ kind: "file", dest: -1, actions: [] }, [], st.platform, "[internal] scratch");
  }

  private async dispatchCopy(st: StageState, c: CopyCommand | AddCommand): Promise<void> {
    const isAdd = c.kind === "add";
    const env = st.env;
    // BuildKit expands sources, dest, --chown, --chmod (and ADD --checksum), never --exclude
    const sources = c.sources.map((s) => this.expandIn(st, c, s));
    const destRaw = this.expandIn(st, c, c.dest);
    const chown = c.chown ? this.expandIn(st, c, c.chown) : "";
    const chmod = c.chmod ? this.expandIn(st, c, c.chmod) : "";
    const checksum = isAdd && c.checksum ? this.expandIn(st, c, c.checksum) : "";
    if (chmod) checkChmod(chmod);
    if (checksum) {
      if (sources.length !== 1)
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          "checksum can't be specified for multiple sources",
          { needle: "--checksum" },
        );
      if (!/^https?:\/\//.test(sources[0]!) && !gitSource(sources[0]!))
        throw new UnplacedError(
          DockerfileErrorCode.flagValue,
          "checksum requires HTTP(S) or Git sources",
          { needle: "--checksum" },
        );
    }
    // Several sources and a destination without a trailing slash are not an error in BuildKit
    // (moby/buildkit#1853): each source is copied to the destination in turn, so
    // `COPY go.mod go.sum .` works and kiln accepts it the same way.
    const dest = pathRelativeToWorkdir(st.workdir, destRaw);
    const chownSpec = chown ? splitChown(chown) : undefined;
    const inputs: Vertex[] = [];
    const inputIndex = (v: Vertex): number => {
      const i = inputs.findIndex((x) => x.digest === v.digest);
      if (i >= 0) return i;
      inputs.push(v);
      return inputs.length - 1;
    };
    // With --link the files land in an empty layer that is merged onto the stage. BuildKit
    // drops --link when --chmod is given, silently, because an octal --chmod also sets the
    // mode of created parent directories, and on merge those would replace the stage's
    // (COPY --link --chmod=600 f /usr/bin/f would leave /usr/bin 0600). kiln keeps --link and
    // creates the parents with the default mode instead (linkedParents).
    const link = c.link;
    const base = link ? undefined : st.fs;
    if (base) inputs.push(base);
    let from: Vertex | undefined;
    let fromIsContext = true;
    if (c.kind === "copy" && c.from) {
      fromIsContext = false;
      from = await this.sourceStage(c.from, st, c.location);
    }
    const actions: FileAction[] = [];
    // BuildKit's CopyInfo for a URL, a git repository or an inline document: only the mode,
    // CreateDestPath and (ADD <url> --unpack) AttemptUnpack; no wildcards, no symlink following
    const singleCopy = (input: number, src: string, unpack: boolean): FileAction => ({
      action: "copy",
      input,
      src,
      dest,
      ...(chownSpec ? { chown: chownSpec } : {}),
      ...(chmod ? { chmod } : {}),
      followSymlinks: false,
      dirContents: false,
      allowWildcard: false,
      allowEmptyWildcard: false,
      createDestPath: true,
      unpack,
      excludes: c.excludes,
      parents: false,
    });
    for (const src of sources) {
      const git = gitSource(src);
      if (git) {
        if (!isAdd)
          throw new UnplacedError(
            DockerfileErrorCode.arguments,
            "source can't be a git ref for COPY",
            { needle: src },
          );
        // one fetch per repository and ref, shared by every platform; its root (the
        // repository's subdir) is copied onto dest
        const repo = vertex(
          gitSourceOp(git, isAdd ? c.keepGitDir : undefined, checksum),
          [],
          undefined,
          `${redactUrl(src)} (${this.df.source.file}:${c.location.startLine})`,
        );
        actions.push(singleCopy(inputIndex(repo), "/", false));
        continue;
      }
      if (/^https?:\/\//.test(src)) {
        if (!isAdd)
          throw new UnplacedError(DockerfileErrorCode.arguments, "source can't be a URL for COPY", {
            needle: src,
          });
        if (checksum && !/^sha256:[0-9a-f]{64}$/.test(checksum))
          throw new UnplacedError(
            DockerfileErrorCode.flagValue,
            `invalid checksum ${checksum}: an http(s) source takes sha256:<64 hex digits>`,
            { needle: "--checksum" },
          );
        // one download per URL, shared by every platform (the file does not depend on it)
        const filename = urlFileName(src);
        const download = vertex(
          { kind: "http", url: src, filename, ...(checksum ? { checksum } : {}) },
          [],
          undefined,
          src,
        );
        // the one file; remote archives stay packed unless --unpack asks
        actions.push(singleCopy(inputIndex(download), `/${filename}`, c.unpack ?? false));
        continue;
      }
      const input = fromIsContext ? this.contextVertex("context") : from;
      if (!input) {
        // copying from an empty stage: nothing exists there
        throw new UnplacedError(
          DockerfileErrorCode.arguments,
          `"${posix.join("/", src)}": not found in ${c.kind === "copy" ? c.from : "source"} (it is empty)`,
          {
            needle: src,
          },
        );
      }
      actions.push({
        action: "copy",
        input: inputIndex(input),
        src,
        dest,
        ...(chownSpec ? { chown: chownSpec } : {}),
        ...(chmod ? { chmod } : {}),
        followSymlinks: true,
        dirContents: true,
        allowWildcard: true,
        allowEmptyWildcard: true,
        createDestPath: true,
        unpack: isAdd && (c.unpack ?? true),
        excludes: c.excludes,
        parents: c.kind === "copy" && c.parents,
      });
    }
    for (const content of c.sourceContents) {
      const data = content.expand
        ? this.expandHeredoc(c.location, content.data, env)
        : content.data;
      const file = vertex(
        {
          kind: "file",
          dest: -1,
          actions: [{ action: "mkfile", path: `/${content.path}`, data, mode: 0o644 }],
        },
        [],
        st.platform,
        "preparing inline document",
      );
      actions.push(singleCopy(inputIndex(file), `/${content.path}`, false));
    }
    if (link && chmod) {
      for (const a of actions) if (a.action === "copy") a.linkedParents = true;
    }
    const kw = isAdd ? "ADD" : "COPY";
    let msg = kw;
    if (c.kind === "copy" && c.parents) msg += " --parents";
    if (chown) msg += ` --chown=${chown}`;
    if (chmod) msg += ` --chmod=${chmod}`;
    for (const s of sources) msg += ` ${s}`;
    for (const s of c.sourceContents) msg += ` <<${s.path}`;
    msg += ` ${destRaw}`;
    const shown = uppercaseCmd(this.displayExpand(c.code, env, false));
    let v: Vertex;
    if (link) {
      const copy = vertex(
        { kind: "file", actions, dest: -1 },
        inputs,
        st.platform,
        this.prefix(st, shown, st.platform, env),
      );
      st.cmdIndex--;
      const merged = vertex(
        { kind: "merge" },
        st.fs ? [st.fs, copy] : [copy],
        st.platform,
        this.prefix(st, `LINK ${shown}`, st.platform, env),
      );
      this.track(st, copy);
      v = this.track(st, merged);
      st.fs = v;
      this.commit(st, msg, copy);
      return;
    }
    v = this.track(
      st,
      vertex(
        { kind: "file", actions, dest: base ? 0 : -1 },
        inputs,
        st.platform,
        this.prefix(st, shown, st.platform, env),
      ),
    );
    st.fs = v;
    this.commit(st, msg, v);
  }

  private expandHeredoc(
    loc: { startLine: number; endLine: number },
    data: string,
    env: Env,
  ): string {
    try {
      return new ShellLex({ escapeToken: "\\", skipProcessQuotes: true }).processWord(
        data,
        env.lookup,
      );
    } catch (e) {
      this.fail(loc, e);
    }
  }
}

/** Steps that get a `[n/total]` number (besides FROM an image): ADD, COPY, RUN, WORKDIR. */
function countSteps(commands: readonly Command[]): number {
  return commands.filter(
    (c) => c.kind === "add" || c.kind === "copy" || c.kind === "run" || c.kind === "workdir",
  ).length;
}

/** `--chmod` as BuildKit checks it: octal up to 07777, else a valid symbolic mode. */
function checkChmod(chmod: string): void {
  const nonOctal = (): never => {
    throw new UnplacedError(
      DockerfileErrorCode.flagValue,
      `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`,
      { needle: chmod, hint: "use an octal mode such as 0755 or a symbolic one such as u+x,go-w" },
    );
  };
  if (/^[0-7]+$/.test(chmod)) {
    if (parseInt(chmod, 8) > 0o7777) nonOctal();
    return;
  }
  try {
    parseChmod(chmod);
  } catch {
    // the symbolic parser rejects what looks numeric with the octal message
    if (/^[0-9]/.test(chmod)) nonOctal();
    throw new UnplacedError(
      DockerfileErrorCode.flagValue,
      `invalid chmod parameter: '${chmod}': not an octal mode nor a symbolic one`,
      { needle: chmod, hint: "use an octal mode such as 0755 or a symbolic one such as u+x,go-w" },
    );
  }
}

/**
 * The git repository a COPY/ADD source names (dfgitutil.ParseGitRef), or undefined for a path
 * or a plain URL; `github.com/x/y` reads as a path here, unlike as a build context.
 */
function gitSource(src: string): GitRef | undefined {
  const ref = parseGitRef(src);
  return ref?.indistinguishableFromLocal ? undefined : ref;
}

/**
 * The git source op of an ADD: `--keep-git-dir` and `--checksum` merged with the URL's
 * `keep-git-dir=` and `checksum=` as BuildKit does (the two must agree when both are given).
 */
function gitSourceOp(
  ref: GitRef,
  keepFlag: boolean | undefined,
  checksumFlag: string,
): GitSourceOp {
  if (keepFlag !== undefined && ref.keepGitDir !== undefined && keepFlag !== ref.keepGitDir)
    throw new UnplacedError(
      DockerfileErrorCode.flagValue,
      `inconsistent keep-git-dir configuration: --keep-git-dir=${keepFlag} but the URL says keep-git-dir=${ref.keepGitDir}`,
      { needle: "--keep-git-dir" },
    );
  if (checksumFlag && ref.checksum && checksumFlag !== ref.checksum)
    throw new UnplacedError(
      DockerfileErrorCode.flagValue,
      `checksum mismatch ${JSON.stringify(checksumFlag)} != ${JSON.stringify(ref.checksum)}`,
      {
        needle: "--checksum",
        hint: "give the commit once, as --checksum or as checksum= in the URL",
      },
    );
  const checksum = ref.checksum || checksumFlag;
  return {
    kind: "git",
    remote: ref.remote,
    ref: ref.ref,
    ...(ref.subdir ? { subdir: ref.subdir } : {}),
    ...(checksum ? { checksum } : {}),
    ...((ref.keepGitDir ?? keepFlag) ? { keepGitDir: true as const } : {}),
    ...(ref.submodules === false ? { skipSubmodules: true as const } : {}),
    ...(ref.fetchByCommit ? { fetchByCommit: true as const } : {}),
  };
}

/**
 * Orders the map-valued config fields by key: BuildKit writes the config with Go's
 * encoding/json, which sorts map keys, so the same Dockerfile gives the same config bytes.
 */
function sortMapKeys(cc: ContainerConfig): void {
  if (cc.Labels) cc.Labels = sortedByKey(cc.Labels);
  if (cc.ExposedPorts) cc.ExposedPorts = sortedByKey(cc.ExposedPorts);
  if (cc.Volumes) cc.Volumes = sortedByKey(cc.Volumes);
}

function sortedByKey<T>(m: Record<string, T>): Record<string, T> {
  const keys = Object.keys(m).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(keys.map((k) => [k, m[k]!]));
}

function splitChown(spec: string): { user: string; group?: string } {
  const colon = spec.indexOf(":");
  return colon < 0 ? { user: spec } : { user: spec.slice(0, colon), group: spec.slice(colon + 1) };
}

function addEnv(list: string[] | undefined, k: string, v: string): string[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((e) => (e.indexOf("=") < 0 ? e : e.slice(0, e.indexOf("="))) === k);
  if (i >= 0) out[i] = `${k}=${v}`;
  else out.push(`${k}=${v}`);
  return out;
}

function withShell(cc: ContainerConfig, args: readonly string[]): string[] {
  const shell = cc.Shell && cc.Shell.length > 0 ? [...cc.Shell] : ["/bin/sh", "-c"];
  return [...shell, args.join(" ")];
}

function summarizeHeredoc(doc: string): string {
  const lines = doc.trim().replace(/\r\n/g, "\n").split("\n");
  return lines[0]! + (lines.length > 1 ? "..." : "");
}

/**
 * With ssh mounts, SSH_AUTH_SOCK points at the first one unless the env sets it (LLB's exec
 * marshalling), whether or not an agent is forwarded for an optional mount.
 */
function sshAuthSock(mounts: readonly ExecMount[], env: Env): string[] {
  const first = mounts.find((m) => m.type === "ssh");
  return first && env.get("SSH_AUTH_SOCK") === undefined ? [`SSH_AUTH_SOCK=${first.target}`] : [];
}

/**
 * The predefined proxy build args reach every RUN without an ARG (and stay out of the history),
 * each under both spellings, as BuildKit's proxyEnvFromBuildArgs and the executor's proxyEnvList.
 * Unlike BuildKit they are part of the step's cache key.
 */
function proxyEnvList(buildArgs: Readonly<Record<string, string>>): string[] {
  const names = ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"];
  const values = new Map<string, string>();
  for (const k of Object.keys(buildArgs).sort()) {
    const upper = k.toUpperCase();
    if (names.includes(upper)) values.set(upper, buildArgs[k]!);
  }
  return names.flatMap((n) => {
    const v = values.get(n);
    return v ? [`${n}=${v}`, `${n.toLowerCase()}=${v}`] : [];
  });
}

/** RUN's history text: `|N K=V … <argv>` listing the stage's build args, as BuildKit writes it. */
function runCommandString(
  args: readonly string[],
  buildArgs: { key: string; value?: string }[],
  env: Env,
): string {
  const tmp: string[] = [];
  const idx = new Map<string, number>();
  for (const a of buildArgs) {
    const v = env.get(a.key) ?? a.value ?? "";
    const i = idx.get(a.key);
    if (i !== undefined) tmp[i] = `${a.key}=${v}`;
    else {
      idx.set(a.key, tmp.length);
      tmp.push(`${a.key}=${v}`);
    }
  }
  const prefix = tmp.length ? [`|${tmp.length}`, ...tmp] : [];
  return [...prefix, ...args].join(" ");
}
