/**
 * Dockerfile text → instruction nodes, with BuildKit's exact line rules
 * (frontend/dockerfile/parser): BOM, parser directives, escape-token line continuations,
 * comments and blank lines inside continuations, per-instruction argument shapes (JSON vs
 * shell form), leading `--flags`, and heredocs for RUN/COPY/ADD.
 */
import {
  DockerfileError,
  DockerfileErrorCode,
  UnplacedError,
  locate,
  placeError,
  type SourceText,
} from "./errors.js";
import { ShellLex } from "./shell.js";
import {
  isGoSpace,
  splitAsciiWhitespace,
  trimGoSpace,
  trimLeftGoSpace,
  trimNewline,
} from "./text.js";

export type EscapeToken = "\\" | "`";

export interface Directive {
  /** Lower-cased: "syntax", "escape" or "check". */
  name: "syntax" | "escape" | "check";
  value: string;
  line: number;
}

export interface Heredoc {
  /** The delimiter word with quotes removed, e.g. EOF for <<"EOF". */
  name: string;
  /** The n of n<<EOF (0 when absent). */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the body is then not expanded. */
  expand: boolean;
  /** <<- form: leading tabs are stripped from body lines (see chompHeredocContent). */
  chomp: boolean;
  /** The body, original line endings included, not yet chomped. */
  content: string;
}

/** One instruction as written, before typing. Lines are 1-based and inclusive. */
export interface InstructionNode {
  /** The keyword as written (case preserved). */
  keyword: string;
  /** Leading `--flags`, quotes and escapes removed. */
  flags: string[];
  /**
   * Arguments shaped per instruction as BuildKit does: whole rest for RUN/CMD/ENTRYPOINT/SHELL
   * shell form and MAINTAINER/USER/WORKDIR/STOPSIGNAL; whitespace-split for FROM/EXPOSE and the
   * shell form of ADD/COPY/VOLUME; JSON elements for exec form; `key, value, "="|""` triples for
   * ENV/LABEL; raw words for ARG; [type, ...command] for HEALTHCHECK.
   */
  args: string[];
  /** Exec (JSON array) form. */
  json: boolean;
  heredocs: Heredoc[];
  /** ONBUILD's trigger instruction. */
  trigger?: InstructionNode;
  /** The logical line with continuations joined (heredoc bodies excluded). */
  original: string;
  startLine: number;
  endLine: number;
  /** Comment lines directly above the instruction, without the leading '#'. */
  comments: string[];
}

export interface ParseWarning {
  message: string;
  line: number;
}

export interface ParsedDockerfile {
  source: SourceText;
  directives: Directive[];
  escapeToken: EscapeToken;
  nodes: InstructionNode[];
  warnings: ParseWarning[];
}

/** BuildKit reads lines with bufio.Scanner, which rejects lines over 64 KiB. */
const MAX_LINE_BYTES = 64 * 1024;

const HEREDOC_INSTRUCTIONS = new Set(["add", "copy", "run"]);
// Go's `.` is "anything but \n" and its `\s` is ASCII-only; spelled out so JS matches the same.
const DIRECTIVE_RE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;
const HEREDOC_RE = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

function continuationRegExp(escape: EscapeToken): RegExp {
  const e = escape === "\\" ? "\\\\" : "`";
  // The escape token as last non-blank character continues the line, unless it is itself
  // escaped by a preceding escape token (BuildKit's rule, including its blind spot for "\\\").
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

function isComment(line: string): boolean {
  return trimLeftGoSpace(line).startsWith("#");
}

/** Splits into physical lines, each keeping its "\n" (a lone "\r" is not a line break). */
function physicalLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) break;
    out.push(text.slice(start, nl + 1));
    start = nl + 1;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** Removes leading tabs from every line of a <<- heredoc body. */
export function chompHeredocContent(content: string): string {
  return content.replace(/^\t+/gm, "");
}

/**
 * Parses one heredoc word such as `<<EOF`, `<<-"EOF"` or `3<<EOF`; undefined when the word is
 * not a heredoc (including malformed quoting such as `<<'EOF`, which BuildKit then treats as
 * an ordinary word). Used for RUN/COPY/ADD arguments that stand for heredoc bodies.
 */
export function parseHeredocWord(word: string): Omit<Heredoc, "content"> | undefined {
  try {
    return heredocWord(word);
  } catch {
    return undefined;
  }
}

/** Like parseHeredocWord, but a delimiter with unbalanced quotes throws (E_DOCKERFILE_EXPANSION). */
function heredocWord(word: string): Omit<Heredoc, "content"> | undefined {
  const m = HEREDOC_RE.exec(word);
  if (m === null) return undefined;
  const rest = m[3]!;
  if (rest === "") return undefined;
  const unquoted = new ShellLex({ skipUnsetEnv: true }).processWords(rest, {});
  if (unquoted.length !== 1) return undefined;
  const raw = new ShellLex({ skipUnsetEnv: true, rawQuotes: true }).processWords(rest, {});
  const quotes = (s: string): number => (s.match(/['"]/g) ?? []).length;
  const name = unquoted[0]!;
  return {
    name,
    fileDescriptor: m[1] === "" ? 0 : Number(m[1]),
    // Any quoting in the delimiter (<<"EOF", <<'EOF', <<E"O"F) disables expansion.
    expand: quotes(name) === quotes(raw[0] ?? ""),
    chomp: m[2] === "-",
  };
}

function heredocsInLine(line: string): Omit<Heredoc, "content">[] {
  let words: string[];
  try {
    words = new ShellLex({ rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).processWords(
      line,
      {},
    );
  } catch {
    // BuildKit ignores lexing errors here: a line it cannot split has no heredocs.
    return [];
  }
  const out: Omit<Heredoc, "content">[] = [];
  for (const w of words) {
    let h: Omit<Heredoc, "content"> | undefined;
    try {
      h = heredocWord(w);
    } catch (e) {
      throw new UnplacedError(
        DockerfileErrorCode.parse,
        e instanceof Error ? e.message : String(e),
        {
          needle: w,
        },
      );
    }
    if (h !== undefined) out.push(h);
  }
  return out;
}

/** Parses Dockerfile text into instruction nodes. Throws DockerfileError (never a raw Error). */
export function parseNodes(text: string, file = "Dockerfile"): ParsedDockerfile {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = physicalLines(text);
  const source: SourceText = { file, lines: lines.map(trimNewline) };
  const state = new LineParser(source, lines);
  return state.run();
}

class LineParser {
  private escape: EscapeToken = "\\";
  private cont = continuationRegExp("\\");
  private directivesDone = false;
  private readonly directives: Directive[] = [];
  private readonly nodes: InstructionNode[] = [];
  private readonly warnings: ParseWarning[] = [];
  private next = 0; // index of the next physical line
  private line = 0; // 1-based number of the last line read

  constructor(
    private readonly source: SourceText,
    private readonly lines: string[],
  ) {}

  run(): ParsedDockerfile {
    let comments: string[] = [];
    while (this.next < this.lines.length) {
      const raw = this.readLine();
      if (isComment(raw)) {
        const c = trimGoSpace(raw.slice(1));
        if (c === "") comments = [];
        else comments.push(c);
      }
      const { text, directive } = this.processLine(raw, true);
      if (directive) comments.pop();
      const startLine = this.line;
      let [logical, ended] = this.trimContinuation(text);
      if (ended && logical === "") continue;

      let emptyContinuation = false;
      while (!ended && this.next < this.lines.length) {
        const raw2 = this.readLine();
        const { text: t2 } = this.processLine(raw2, false);
        if (isComment(raw2)) continue;
        if (trimLeftGoSpace(t2) === "") {
          emptyContinuation = true;
          continue;
        }
        const [piece, end2] = this.trimContinuation(t2);
        logical += piece;
        ended = end2;
      }
      if (emptyContinuation) {
        this.warnings.push({
          message: `Empty continuation line found in: ${logical}`,
          line: this.line,
        });
      }

      const node = this.guard(startLine, () => this.nodeFromLine(logical, comments, startLine));
      this.readHeredocs(node, logical, startLine);
      node.startLine = startLine;
      node.endLine = this.line;
      this.nodes.push(node);
      comments = [];
    }
    if (this.nodes.length === 0) {
      const at = { line: Math.max(1, this.line), column: 1 };
      throw new DockerfileError(
        DockerfileErrorCode.structure,
        "file with no instructions",
        { source: this.source, ...at },
        { hint: "a Dockerfile needs at least a FROM instruction" },
      );
    }
    return {
      source: this.source,
      directives: this.directives,
      escapeToken: this.escape,
      nodes: this.nodes,
      warnings: this.warnings,
    };
  }

  private readLine(): string {
    const raw = this.lines[this.next++]!;
    this.line++;
    if (raw.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(raw) > MAX_LINE_BYTES) {
      this.fail(
        this.line,
        `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES - 1}`,
        "split the line with the escape character at line ends, or move data into a file",
      );
    }
    return raw;
  }

  private fail(line: number, message: string, hint: string): never {
    throw new DockerfileError(
      DockerfileErrorCode.parse,
      message,
      { source: this.source, ...locate(this.source, line, line) },
      { hint },
    );
  }

  /** Runs fn, turning an UnplacedError into a positioned DockerfileError. */
  private guard<T>(startLine: number, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw placeError(e, this.source, startLine, this.line);
    }
  }

  private processLine(raw: string, stripLeft: boolean): { text: string; directive: boolean } {
    let token = trimNewline(raw);
    if (stripLeft) token = trimLeftGoSpace(token);
    const directive = this.directivesDone ? false : this.parseDirective(token);
    return { text: isComment(token) ? "" : token, directive };
  }

  /** Directives are `# name=value` lines before anything else; the first other line ends them. */
  private parseDirective(token: string): boolean {
    if (!token.startsWith("#")) {
      this.directivesDone = true;
      return false;
    }
    const m = DIRECTIVE_RE.exec(trimLeftGoSpace(token.slice(1)));
    const name = m?.[1]?.toLowerCase();
    if (m === null || (name !== "syntax" && name !== "escape" && name !== "check")) {
      this.directivesDone = true;
      return false;
    }
    if (this.directives.some((d) => d.name === name)) {
      this.fail(
        this.line,
        `only one ${name} parser directive can be used`,
        `remove the repeated # ${name}= line`,
      );
    }
    const value = m[2]!;
    if (name === "escape") {
      if (value !== "\\" && value !== "`") {
        throw new DockerfileError(
          DockerfileErrorCode.parse,
          `invalid escape token '${value}' does not match \` or \\`,
          { source: this.source, ...locate(this.source, this.line, this.line, value) },
          { hint: "use `# escape=\\` (the default) or `# escape=`` `" },
        );
      }
      this.escape = value;
      this.cont = continuationRegExp(value);
    }
    this.directives.push({ name, value, line: this.line });
    return true;
  }

  private trimContinuation(text: string): [string, boolean] {
    if (this.cont.test(text)) return [text.replace(this.cont, "$1"), false];
    return [text, true];
  }

  private readHeredocs(node: InstructionNode, logical: string, startLine: number): void {
    const target = node.keyword.toLowerCase() === "onbuild" ? node.trigger : node;
    if (target === undefined) return;
    if (!HEREDOC_INSTRUCTIONS.has(target.keyword.toLowerCase()) || target.json) return;
    if (!logical.includes("<<")) return;
    for (const h of this.guard(startLine, () => heredocsInLine(logical))) {
      let content = "";
      let terminated = false;
      while (this.next < this.lines.length) {
        const raw = this.readLine();
        let candidate = trimNewline(raw);
        if (h.chomp) candidate = candidate.replace(/^\t+/, "");
        if (candidate === h.name) {
          terminated = true;
          break;
        }
        content += raw;
      }
      if (!terminated) {
        throw new DockerfileError(
          DockerfileErrorCode.parse,
          `unterminated heredoc ${h.name}`,
          { source: this.source, ...locate(this.source, startLine, startLine, "<<") },
          { hint: `end the heredoc with a line containing only ${h.name}` },
        );
      }
      node.heredocs.push({ ...h, content });
    }
  }

  private nodeFromLine(line: string, comments: string[], startLine: number): InstructionNode {
    const { keyword, flags, rest } = this.splitCommand(line);
    const shaped = shapeArgs(keyword.toLowerCase(), rest, this.escape);
    const node: InstructionNode = {
      keyword,
      flags,
      args: shaped.args,
      json: shaped.json,
      heredocs: [],
      original: line,
      startLine,
      endLine: startLine,
      comments,
    };
    if (keyword.toLowerCase() === "onbuild" && rest !== "") {
      node.trigger = this.nodeFromLine(rest, [], startLine);
      node.args = [node.trigger.keyword, ...node.trigger.args];
    }
    return node;
  }

  private splitCommand(line: string): { keyword: string; flags: string[]; rest: string } {
    const parts = splitAsciiWhitespace(trimGoSpace(line), 2);
    if (parts.length < 2) return { keyword: parts[0]!, flags: [], rest: "" };
    const { rest, flags } = extractFlags(parts[1]!, this.escape);
    return { keyword: parts[0]!, flags, rest: trimGoSpace(rest) };
  }
}

/**
 * Pulls leading `--name[=value]` words off an instruction's arguments. Quotes group, the
 * escape token escapes, and a bare `--` ends the flags.
 */
function extractFlags(line: string, escape: EscapeToken): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let word = "";
  let blankOk = false;
  let quote = "";
  let phase: "spaces" | "word" | "quote" = "spaces";
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = pos < line.length ? line[pos]! : "";
    if (phase === "spaces") {
      if (pos === line.length) break;
      if (isGoSpace(line.charCodeAt(pos))) continue;
      if (ch !== "-" || line[pos + 1] !== "-") return { rest: line.slice(pos), flags };
      phase = "word";
    }
    if (pos === line.length) {
      if (word !== "--" && (blankOk || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === "word") {
      if (isGoSpace(line.charCodeAt(pos))) {
        if (word === "--") return { rest: line.slice(pos), flags };
        if (blankOk || word.length > 0) flags.push(word);
        word = "";
        blankOk = false;
        phase = "spaces";
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
        phase = "quote";
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue;
        pos++;
        word += line[pos]!;
        continue;
      }
      word += ch;
      continue;
    }
    // phase === "quote"
    if (ch === quote) {
      phase = "word";
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = "word";
        continue;
      }
      pos++;
      word += line[pos]!;
      continue;
    }
    word += ch;
  }
  return { rest: "", flags };
}

type Shaped = { args: string[]; json: boolean };

function shapeArgs(keyword: string, rest: string, escape: EscapeToken): Shaped {
  switch (keyword) {
    case "run":
    case "cmd":
    case "entrypoint":
    case "shell":
      return maybeJSON(rest);
    case "add":
    case "copy":
    case "volume":
      return maybeJSONToList(rest);
    case "from":
    case "expose":
      return { args: rest === "" ? [] : splitAsciiWhitespace(rest), json: false };
    case "env":
      return { args: nameValues(rest, "ENV", escape), json: false };
    case "label":
      return { args: nameValues(rest, "LABEL", escape), json: false };
    case "arg":
      return { args: shellishWords(rest, escape), json: false };
    case "healthcheck":
      return healthArgs(rest);
    case "maintainer":
    case "stopsignal":
    case "user":
    case "workdir":
      return { args: rest === "" ? [] : [rest], json: false };
    case "onbuild":
      return { args: [], json: false };
    default:
      // Unknown instructions parse here and are rejected when typed, with a suggestion.
      return { args: [], json: false };
  }
}

const NOT_JSON = Symbol("not-json");

/** The exec-form array, or NOT_JSON when the text is not a JSON array (then it is shell form). */
function parseJSONArray(rest: string): string[] | typeof NOT_JSON {
  const t = trimLeftGoSpace(rest);
  if (!t.startsWith("[")) return NOT_JSON;
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return NOT_JSON;
  }
  if (!Array.isArray(value)) return NOT_JSON;
  for (const v of value) {
    if (typeof v !== "string") {
      throw new UnplacedError(
        DockerfileErrorCode.parse,
        "when using JSON array syntax, arrays must be comprised of strings only",
        { needle: "[", hint: 'quote every element, e.g. ["echo", "1"]' },
      );
    }
  }
  return value as string[];
}

function maybeJSON(rest: string): Shaped {
  if (rest === "") return { args: [], json: false };
  const arr = parseJSONArray(rest);
  if (arr !== NOT_JSON) return { args: arr, json: true };
  return { args: [rest], json: false };
}

function maybeJSONToList(rest: string): Shaped {
  const arr = parseJSONArray(rest);
  if (arr !== NOT_JSON) return { args: arr, json: true };
  return { args: rest === "" ? [] : splitAsciiWhitespace(rest), json: false };
}

function healthArgs(rest: string): Shaped {
  let sep = 0;
  while (sep < rest.length && !isGoSpace(rest.charCodeAt(sep))) sep++;
  if (sep === 0) return { args: [], json: false };
  let next = sep;
  while (next < rest.length && isGoSpace(rest.charCodeAt(next))) next++;
  const cmd = maybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

/**
 * Splits on whitespace outside quotes, keeping quotes and escapes in the words (they are
 * removed later by word expansion). Used for ARG and for ENV/LABEL key=value lists.
 */
function shellishWords(rest: string, escape: EscapeToken): string[] {
  const words: string[] = [];
  let word = "";
  let blankOk = false;
  let quote = "";
  let phase: "spaces" | "word" | "quote" = "spaces";
  for (let pos = 0; pos <= rest.length; pos++) {
    const ch = pos < rest.length ? rest[pos]! : "";
    if (phase === "spaces") {
      if (pos === rest.length) break;
      if (isGoSpace(rest.charCodeAt(pos))) continue;
      phase = "word";
    }
    if (pos === rest.length) {
      if (blankOk || word.length > 0) words.push(word);
      break;
    }
    if (phase === "word") {
      if (isGoSpace(rest.charCodeAt(pos))) {
        if (blankOk || word.length > 0) words.push(word);
        word = "";
        blankOk = false;
        phase = "spaces";
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
        phase = "quote";
      } else if (ch === escape) {
        if (pos + 1 === rest.length) continue; // a trailing escape is dropped
        word += ch;
        pos++;
        word += rest[pos]!;
        continue;
      }
      word += ch;
      continue;
    }
    // phase === "quote": the escape token works inside double quotes only.
    if (ch === quote) phase = "word";
    if (ch === escape && quote !== "'") {
      if (pos + 1 === rest.length) {
        phase = "word";
        continue;
      }
      word += ch;
      pos++;
      word += rest[pos]!;
      continue;
    }
    word += ch;
  }
  return words;
}

/** ENV/LABEL: `k=v ...` pairs, or the legacy `KEY name value` form; flattened to triples. */
function nameValues(rest: string, what: "ENV" | "LABEL", escape: EscapeToken): string[] {
  const words = shellishWords(rest, escape);
  if (words.length === 0) return [];
  if (!words[0]!.includes("=")) {
    const parts = splitAsciiWhitespace(rest, 2);
    if (parts.length < 2) {
      throw new UnplacedError(DockerfileErrorCode.arguments, `${what} must have two arguments`, {
        hint: `write ${what} name=value`,
      });
    }
    return [parts[0]!, parts[1]!, ""];
  }
  const out: string[] = [];
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq < 0) {
      throw new UnplacedError(
        DockerfileErrorCode.parse,
        `Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`,
        { needle: w, hint: `quote values that contain spaces: ${what} name="a value"` },
      );
    }
    out.push(w.slice(0, eq), w.slice(eq + 1), "=");
  }
  return out;
}
