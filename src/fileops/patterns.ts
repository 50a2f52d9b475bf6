/**
 * Include/exclude pattern lists with the semantics BuildKit uses for `COPY --exclude`,
 * `COPY --parents` and .dockerignore: `**` spans directories, `!` re-includes, later patterns
 * win, and a pattern matching a directory matches everything below it.
 */
import { posix } from "node:path";
import { KilnError } from "../errors.js";
import { globRegExp } from "./glob.js";

type Kind = "exact" | "prefix" | "suffix" | "regexp";

interface Pattern {
  text: string;
  exclusion: boolean;
  kind: Kind;
  re?: RegExp;
}

/** Per-pattern results for a directory, handed down to its children. */
export type MatchInfo = readonly boolean[] | undefined;

export interface PatternMatcher {
  readonly hasExclusions: boolean;
  /** Whether `rel` (relative, slash-separated) matches, given its parent directory's info. */
  match(rel: string, parent: MatchInfo): { matched: boolean; info: boolean[] };
}

const REGEX_ESCAPED = new Set([".", "+", "(", ")", "|", "{", "}", "$"]);

function compile(text: string): { kind: Kind; re?: RegExp } {
  let re = "^";
  let kind: Kind = "exact";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const start = i === 0;
    if (c === "*" && text[i + 1] === "*") {
      i++;
      if (text[i + 1] === "/") i++;
      if (i + 1 >= text.length) {
        if (kind === "exact") kind = "prefix";
        else {
          re += ".*";
          kind = "regexp";
        }
      } else {
        re += "(.*/)?";
        kind = "regexp";
      }
      if (start) kind = "suffix";
    } else if (c === "*") {
      re += "[^/]*";
      kind = "regexp";
    } else if (c === "?") {
      re += "[^/]";
      kind = "regexp";
    } else if (REGEX_ESCAPED.has(c)) {
      re += "\\" + c;
    } else if (c === "\\") {
      if (i + 1 < text.length) {
        re += "\\" + text[++i]!;
        kind = "regexp";
      } else re += "\\\\";
    } else {
      if (c === "[" || c === "]") kind = "regexp";
      re += c;
    }
  }
  if (kind !== "regexp") return { kind };
  return { kind, re: new RegExp(re + "$", "s") };
}

function matches(p: Pattern, rel: string): boolean {
  switch (p.kind) {
    case "exact":
      return rel === p.text;
    case "prefix":
      return rel.startsWith(p.text.slice(0, -2));
    case "suffix": {
      const suffix = p.text.slice(2);
      return rel.endsWith(suffix) || (suffix.startsWith("/") && rel === suffix.slice(1));
    }
    case "regexp":
      return p.re!.test(rel);
  }
}

function cleanPattern(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** Compiles a pattern list; a malformed pattern is an E_COPY_PATTERN error. */
export function compilePatterns(patterns: readonly string[]): PatternMatcher | undefined {
  const list: Pattern[] = [];
  for (const raw of patterns) {
    let text = raw.trim();
    if (text === "") continue;
    text = cleanPattern(text);
    let exclusion = false;
    if (text.startsWith("!")) {
      if (text.length === 1) {
        throw new KilnError("E_COPY_PATTERN", 'illegal exclusion pattern: "!"', {
          hint: "write !<pattern> to re-include paths an earlier pattern excluded",
        });
      }
      exclusion = true;
      text = text.slice(1);
    }
    if (globRegExp(text) === null) {
      throw new KilnError("E_COPY_PATTERN", `invalid pattern ${JSON.stringify(raw)}`, {
        hint: "check the brackets and escapes in the pattern",
      });
    }
    list.push({ text, exclusion, ...compile(text) });
  }
  if (list.length === 0) return undefined;
  return {
    hasExclusions: list.some((p) => p.exclusion),
    match(rel, parent) {
      const info: boolean[] = [];
      let matched = false;
      list.forEach((p, i) => {
        let m = parent?.[i] ?? false;
        if (!m) {
          if (p.exclusion !== matched) {
            info[i] = false;
            return;
          }
          m = matches(p, rel);
          if (!m && parent === undefined) {
            // without the parent's results, look at every ancestor directly
            const dirs = rel.split("/").slice(0, -1);
            for (let k = 1; k <= dirs.length && !m; k++) m = matches(p, dirs.slice(0, k).join("/"));
          }
        }
        info[i] = m;
        if (m) matched = !p.exclusion;
      });
      return { matched, info };
    },
  };
}
