/**
 * Shell-word expansion with BuildKit's exact semantics (frontend/dockerfile/shell/lex.go):
 * quotes, the escape token, `$v`, `${v}`, `${v:-w}` `${v-w}` `${v:+w}` `${v+w}` `${v:?m}`
 * `${v?m}` `${v#p}` `${v##p}` `${v%p}` `${v%%p}` `${v/p/r}` `${v//p/r}`, and word splitting.
 * It is a small shell subset, not a shell: no command substitution, no globbing.
 */
import { KilnError } from "../../errors.js";
import { DockerfileErrorCode } from "./errors.js";
import { isGoSpace } from "./text.js";

/** Variables for expansion: a Map, a plain record, or a lookup function (undefined = unset). */
export type EnvSource =
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string | undefined>>
  | ((name: string) => string | undefined);

export interface ShellLexOptions {
  /** The Dockerfile's escape token: backslash (default) or backtick. */
  escapeToken?: "\\" | "`";
  /** Keep quote characters in the output (used to detect quoted heredoc delimiters). */
  rawQuotes?: boolean;
  /** Keep escape tokens in the output. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies are expanded this way). */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnsetEnv?: boolean;
}

export interface ProcessWordResult {
  /** The expanded word, quotes removed, spaces kept. */
  result: string;
  /** The expansion split into words (quoted spaces do not split). */
  words: string[];
  /** Names that were looked up and set. */
  matched: Set<string>;
  /** Names that were looked up and not set (for "undefined variable" warnings). */
  unmatched: Set<string>;
}

/** Raised inside the lexer; wrapped into a KilnError naming the word at the top. */
class LexFailure extends Error {}

type Lookup = (name: string) => string | undefined;

function toLookup(env: EnvSource): Lookup {
  if (typeof env === "function") return env;
  if (env instanceof Map) {
    const map: ReadonlyMap<string, string> = env;
    return (name) => map.get(name);
  }
  const rec = env as Readonly<Record<string, string | undefined>>;
  return (name) => (Object.prototype.hasOwnProperty.call(rec, name) ? rec[name] : undefined);
}

const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;
const isLetter = (c: string): boolean => LETTER.test(c);
const isDigit = (c: string): boolean => DIGIT.test(c);
const isSpace = (c: string): boolean => isGoSpace(c.charCodeAt(0)) && c.length === 1;
const isSpecialParam = (c: string): boolean => "@*#?-$!0".includes(c) && c.length === 1;

/**
 * Accumulates split words. The buffer lives on the lexer and is reset by every nested
 * `${...}` scan, exactly as BuildKit's shared buffer is, so word splitting of text before a
 * `${v:-w}` inside the same word matches BuildKit's output.
 */
class Words {
  readonly list: string[] = [];
  inWord = false;
  constructor(private readonly lex: ShellLex) {}

  addChar(c: string): void {
    if (isSpace(c)) {
      if (this.inWord && this.lex.wordBuffer.length > 0) {
        this.list.push(this.lex.wordBuffer);
        this.lex.wordBuffer = "";
        this.inWord = false;
      }
    } else {
      this.addRawChar(c);
    }
  }
  addRawChar(c: string): void {
    this.lex.wordBuffer += c;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const c of s) this.addChar(c);
  }
  addRawString(s: string): void {
    this.lex.wordBuffer += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.lex.wordBuffer.length > 0) {
      this.list.push(this.lex.wordBuffer);
      this.lex.wordBuffer = "";
      this.inWord = false;
    }
    return this.list;
  }
}

/** A reusable expander; not safe for re-entrant use (one word at a time). */
export class ShellLex {
  readonly escapeToken: "\\" | "`";
  private readonly rawQuotes: boolean;
  private readonly skipProcessQuotes: boolean;
  private readonly skipUnsetEnv: boolean;
  private readonly defaultRawEscapes: boolean;

  // Per-call state.
  private chars: string[] = [];
  private pos = 0;
  private lookup: Lookup = () => undefined;
  private capture = false;
  private matched = new Set<string>();
  private unmatched = new Set<string>();
  private rawEscapes = false;
  /** @internal shared word buffer, see Words. */
  wordBuffer = "";

  constructor(opts: ShellLexOptions = {}) {
    this.escapeToken = opts.escapeToken ?? "\\";
    this.rawQuotes = opts.rawQuotes ?? false;
    this.defaultRawEscapes = opts.rawEscapes ?? false;
    this.skipProcessQuotes = opts.skipProcessQuotes ?? false;
    this.skipUnsetEnv = opts.skipUnsetEnv ?? false;
  }

  /** Expands one word: quotes removed, inner spaces kept. Throws E_DOCKERFILE_EXPANSION. */
  processWord(word: string, env: EnvSource): string {
    return this.run(word, env, true).result;
  }

  /** Expands and splits into words, as for EXPOSE arguments. */
  processWords(word: string, env: EnvSource): string[] {
    return this.run(word, env, false).words;
  }

  /** Like processWord, and reports which variables were used and which were unset. */
  processWordWithMatches(word: string, env: EnvSource): ProcessWordResult {
    return this.run(word, env, true);
  }

  private run(word: string, env: EnvSource, capture: boolean): ProcessWordResult {
    this.chars = Array.from(word);
    this.pos = 0;
    this.lookup = toLookup(env);
    this.capture = capture;
    this.matched = new Set();
    this.unmatched = new Set();
    this.rawEscapes = this.defaultRawEscapes;
    this.wordBuffer = "";
    try {
      const { result, words } = this.processStopOn(undefined, this.defaultRawEscapes);
      return { result, words, matched: this.matched, unmatched: this.unmatched };
    } catch (e) {
      if (e instanceof LexFailure) {
        throw new KilnError(
          DockerfileErrorCode.expansion,
          `failed to process ${JSON.stringify(word)}: ${e.message}`,
          {
            hint: "check the quotes and ${...} substitutions in this word; escape a literal $ as \\$",
          },
        );
      }
      throw e;
    }
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }

  private next(): string | undefined {
    const c = this.chars[this.pos];
    if (c !== undefined) this.pos++;
    return c;
  }

  private processStopOn(
    stop: string | undefined,
    rawEscapes: boolean,
  ): { result: string; words: string[] } {
    let result = "";
    this.wordBuffer = "";
    const words = new Words(this);
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      for (let ch = this.peek(); ch !== undefined; ch = this.peek()) {
        if (stop !== undefined && ch === stop) {
          this.next();
          return { result, words: words.finish() };
        }
        const special = this.special(ch);
        if (special !== undefined) {
          const tmp = special();
          result += tmp;
          if (ch === "$") words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        let c = this.next()!;
        if (c === this.escapeToken) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const escaped = this.next();
          if (escaped === undefined) break; // a trailing escape is dropped
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== undefined) {
        throw new LexFailure(`unexpected end of statement while looking for matching ${stop}`);
      }
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private special(ch: string): (() => string) | undefined {
    switch (ch) {
      case "$":
        return () => this.processDollar();
      case "<":
        return () => this.processPossibleHeredoc();
      case "'":
        return this.skipProcessQuotes ? undefined : () => this.processSingleQuote();
      case '"':
        return this.skipProcessQuotes ? undefined : () => this.processDoubleQuote();
      default:
        return undefined;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a single quote cannot be escaped inside.
    let result = "";
    const open = this.next()!;
    if (this.rawQuotes) result += open;
    for (;;) {
      const c = this.next();
      if (c === undefined) {
        throw new LexFailure("unexpected end of statement while looking for matching single-quote");
      }
      if (c === "'") {
        if (this.rawQuotes) result += c;
        return result;
      }
      result += c;
    }
  }

  private processDoubleQuote(): string {
    // Literal except $, and the escape token which only escapes " $ and itself.
    let result = "";
    const open = this.next()!;
    if (this.rawQuotes) result += open;
    for (;;) {
      const p = this.peek();
      if (p === undefined) {
        throw new LexFailure("unexpected end of statement while looking for matching double-quote");
      }
      if (p === '"') {
        this.next();
        if (this.rawQuotes) result += p;
        return result;
      }
      if (p === "$") {
        result += this.processDollar();
        continue;
      }
      let c = this.next()!;
      if (c === this.escapeToken) {
        if (this.rawEscapes) result += c;
        const q = this.peek();
        if (q === undefined) continue; // the loop then reports the missing quote
        if (q === '"' || q === "$" || q === this.escapeToken) c = this.next()!;
      }
      result += c;
    }
  }

  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== "<") return "<";
    this.next();
    // Whitespace between << and the delimiter stays attached so the pair reads as one word.
    let space = "";
    for (let c = this.peek(); c === " " || c === "\t" || c === "\r"; c = this.peek()) {
      space += c;
      this.next();
    }
    return "<<" + space;
  }

  private processName(): string {
    let name = "";
    for (let c = this.peek(); c !== undefined; c = this.peek()) {
      if (name === "" && isDigit(c)) {
        // Positional parameters: all leading digits form the name.
        for (let d = this.peek(); d !== undefined && isDigit(d); d = this.peek()) {
          name += this.next()!;
        }
        return name;
      }
      if (name === "" && isSpecialParam(c)) {
        this.next();
        return c;
      }
      if (!isLetter(c) && !isDigit(c) && c !== "_") break;
      name += this.next()!;
    }
    return name;
  }

  private getEnv(name: string): string | undefined {
    const v = this.lookup(name);
    if (this.capture) (v === undefined ? this.unmatched : this.matched).add(name);
    return v;
  }

  /** Scans a nested word up to `stop`; a scan that runs off the end reports `missing`. */
  private scanUntil(stop: string, rawEscapes: boolean, missing: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).result;
    } catch (e) {
      if (e instanceof LexFailure && this.peek() === undefined) throw new LexFailure(missing);
      throw e;
    }
  }

  private processDollar(): string {
    this.next(); // $
    if (this.peek() !== "{") {
      const name = this.processName();
      if (name === "") return "$";
      const value = this.getEnv(name);
      if (value === undefined && this.skipUnsetEnv) return "$" + name;
      return value ?? "";
    }
    this.next(); // {
    const first = this.peek();
    if (first === undefined) throw new LexFailure("syntax error: missing '}'");
    if (first === "{" || first === "}" || first === ":") {
      throw new LexFailure("syntax error: bad substitution");
    }
    const name = this.processName();
    let ch = this.next();
    if (ch === undefined) throw new LexFailure("syntax error: missing '}'");
    let modifier = ch;

    if (ch === "}") {
      const value = this.getEnv(name);
      if (value === undefined && this.skipUnsetEnv) return "${" + name + "}";
      return value ?? "";
    }
    if (ch === "/") return this.processReplace(name);

    let nullIsUnset = false;
    if (ch === ":") {
      nullIsUnset = true;
      ch = this.next();
      modifier += ch ?? "";
    } else if (!"+-?#%".includes(ch)) {
      throw new LexFailure(`unsupported modifier (${modifier}) in substitution`);
    }
    const trims = ch === "#" || ch === "%";
    if (nullIsUnset && trims) {
      throw new LexFailure(`unsupported modifier (${modifier}) in substitution`);
    }
    let word = this.scanUntil("}", trims, "syntax error: missing '}'");
    const value = this.getEnv(name);
    if (value === undefined && this.skipUnsetEnv) return "${" + name + modifier + word + "}";
    const empty = value === undefined || (nullIsUnset && value === "");

    switch (ch) {
      case "-":
        return empty ? word : value;
      case "+":
        return empty ? "" : word;
      case "?":
        if (value === undefined) {
          throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be unset"}`);
        }
        if (nullIsUnset && value === "") {
          throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be empty"}`);
        }
        return value;
      case "#":
      case "%": {
        // A doubled operator (## / %%) removes the longest match, a single one the shortest.
        const greedy = word.startsWith(ch);
        if (greedy) word = word.slice(1);
        return ch === "%"
          ? trimSuffix(word, value ?? "", greedy)
          : trimPrefix(word, value ?? "", greedy);
      }
      default:
        throw new LexFailure(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  private processReplace(name: string): string {
    const all = this.peek() === "/";
    if (all) this.next();
    const pattern = this.scanUntil("/", true, "syntax error: missing '/' in ${}");
    const replacement = this.scanUntil("}", true, "syntax error: missing '}'");
    const value = this.getEnv(name);
    if (value === undefined && this.skipUnsetEnv) {
      return "${" + name + "/" + pattern + "/" + replacement + "}";
    }
    const re = patternToRegExp(pattern, true, false);
    const subject = value ?? "";
    if (all) return replaceAllGo(re, subject, replacement);
    re.lastIndex = 0;
    const m = re.exec(subject);
    if (m === null) return subject;
    return subject.slice(0, m.index) + replacement + subject.slice(m.index + m[0].length);
  }
}

/**
 * Converts a shell pattern (`*` any run, `?` one character, `\` escapes `*`, `?`, `\`) into a
 * regular expression. Like BuildKit, bracket expressions are literal text, and `.` never
 * matches a newline (Go's default).
 */
function patternToRegExp(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const cps = Array.from(pattern);
  let out = anchored ? "^" : "";
  const star = greedy ? "[^\\n]*" : "[^\\n]*?";
  for (let i = 0; i < cps.length; i++) {
    let t = cps[i]!;
    if (t === "*") {
      out += star;
      continue;
    }
    if (t === "?") {
      out += "[^\\n]";
      continue;
    }
    if (t === "\\") {
      const p = cps[i + 1];
      // `\}` and `\/` only protect the ${} syntax; the backslash is not part of the pattern.
      if (p === "}" || p === "/") continue;
      out += "\\";
      i++;
      t = cps[i] ?? "";
      if (t !== "*" && t !== "?" && t !== "\\") {
        throw new LexFailure(
          `invalid pattern (${pattern}) in substitution: invalid escape '\\${t}'`,
        );
      }
    } else if ("[]{}.+()|^$".includes(t)) {
      out += "\\";
    }
    out += t;
  }
  return new RegExp(out, "gu");
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const re = patternToRegExp(pattern, greedy, true);
  re.lastIndex = 0;
  const m = re.exec(value);
  return m === null ? value : value.slice(m[0].length);
}

/** Reverses a pattern by code points, keeping each `\x` escape pair in order. */
function reversePattern(pattern: string): string {
  const cps = Array.from(pattern);
  const out: string[] = new Array<string>(cps.length);
  const last = cps.length - 1;
  for (let i = 0; i <= last;) {
    const t = cps[i]!;
    if (t === "\\" && i !== last) {
      out[last - i - 1] = t;
      out[last - i] = cps[i + 1]!;
      i += 2;
    } else {
      out[last - i] = t;
      i++;
    }
  }
  return out.join("");
}

const reverseString = (s: string): string => Array.from(s).reverse().join("");

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // Shortest/longest suffix = shortest/longest prefix of the reversed text.
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/**
 * Go's Regexp.ReplaceAllString: an empty match right after a previous match is not replaced,
 * and `$0`/`${0}` in the replacement name the match ($$ is a literal $).
 */
function replaceAllGo(re: RegExp, src: string, template: string): string {
  let out = "";
  let lastEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    re.lastIndex = searchPos;
    const m = re.exec(src);
    if (m === null) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastEnd, start);
    if (end > lastEnd || start === 0) out += expandTemplate(template, m[0]);
    lastEnd = end;
    const width = (src.codePointAt(searchPos) ?? 0) > 0xffff ? 2 : 1;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + src.slice(lastEnd);
}

function expandTemplate(template: string, match: string): string {
  let out = "";
  let rest = template;
  for (;;) {
    const i = rest.indexOf("$");
    if (i < 0) break;
    out += rest.slice(0, i);
    rest = rest.slice(i + 1);
    if (rest.startsWith("$")) {
      out += "$";
      rest = rest.slice(1);
      continue;
    }
    const m = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (m === null) {
      out += "$";
      continue;
    }
    rest = rest.slice(m[0].length);
    const name = m[1] ?? m[2]!;
    // The pattern has no groups, so only group 0 (the whole match) can be non-empty.
    if (/^0+$/.test(name)) out += match;
  }
  return out + rest;
}
