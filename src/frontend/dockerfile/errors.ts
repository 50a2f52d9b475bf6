import { KilnError } from "../../errors.js";

/** Stable error codes of the Dockerfile frontend's parsing layers. */
export const DockerfileErrorCode = {
  /** Malformed text: directives, heredocs, quoting, JSON form, key=value syntax. */
  parse: "E_DOCKERFILE_PARSE",
  /** An instruction keyword BuildKit does not know. */
  unknownInstruction: "E_DOCKERFILE_UNKNOWN_INSTRUCTION",
  /** A `--flag` the instruction does not accept. */
  unknownFlag: "E_DOCKERFILE_UNKNOWN_FLAG",
  /** A known flag with a bad or missing value (including --mount / --device fields). */
  flagValue: "E_DOCKERFILE_FLAG_VALUE",
  /** Too few, too many or invalid arguments for an instruction. */
  arguments: "E_DOCKERFILE_ARGUMENTS",
  /** The file holds no instruction, or an instruction comes before the first FROM. */
  structure: "E_DOCKERFILE_STRUCTURE",
  /** Shell-word expansion failed (bad substitution, unmatched quote, ${v:?msg}). */
  expansion: "E_DOCKERFILE_EXPANSION",
  /** A check (lint rule) found something and `check=error=true` makes that fatal. */
  lint: "E_DOCKERFILE_LINT",
} as const;

/** The source a position refers to: a display name and its physical lines (no line endings). */
export interface SourceText {
  file: string;
  lines: readonly string[];
}

/**
 * A Dockerfile error that points at a place in the file. The message reads
 * `file:line:col: what is wrong`, then the offending line and a caret under the column.
 */
export class DockerfileError extends KilnError {
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
  /** 1-based column (UTF-16 units). */
  readonly column: number;
  /** The bare description, without position or excerpt. */
  readonly detail: string;

  constructor(
    code: string,
    detail: string,
    at: { source: SourceText; line: number; column: number },
    opts: { hint?: string; cause?: unknown } = {},
  ) {
    super(code, formatMessage(detail, at.source, at.line, at.column), opts);
    this.name = "DockerfileError";
    this.file = at.source.file;
    this.line = at.line;
    this.column = at.column;
    this.detail = detail;
  }
}

function formatMessage(detail: string, source: SourceText, line: number, column: number): string {
  const head = `${source.file}:${line}:${column}: ${detail}`;
  const text = source.lines[line - 1];
  if (text === undefined) return head;
  const gutter = String(line);
  const pad = " ".repeat(gutter.length);
  // Keep tabs in the caret line so the caret lines up under tab-indented text.
  const lead = text.slice(0, Math.max(0, column - 1)).replace(/[^\t]/g, " ");
  return `${head}\n ${gutter} | ${text}\n ${pad} | ${lead}^`;
}

/**
 * Finds where `needle` first appears in lines [startLine, endLine] (1-based); falls back to the
 * first non-blank column of startLine. Used to aim the caret at the offending token.
 */
export function locate(
  source: SourceText,
  startLine: number,
  endLine: number,
  needle?: string,
): { line: number; column: number } {
  if (needle !== undefined && needle !== "") {
    for (let l = startLine; l <= endLine; l++) {
      const idx = source.lines[l - 1]?.indexOf(needle) ?? -1;
      if (idx >= 0) return { line: l, column: idx + 1 };
    }
  }
  const text = source.lines[startLine - 1] ?? "";
  const first = text.search(/\S/);
  return { line: startLine, column: first < 0 ? 1 : first + 1 };
}

/**
 * A Dockerfile error not yet tied to a position: thrown by pure helpers (flag, mount and value
 * parsing) and positioned by the caller with {@link placeError}. `needle` is the text to aim
 * the caret at.
 */
export class UnplacedError extends KilnError {
  readonly needle: string | undefined;
  constructor(code: string, message: string, opts: { needle?: string; hint?: string } = {}) {
    super(code, message, opts.hint === undefined ? {} : { hint: opts.hint });
    this.name = "UnplacedError";
    this.needle = opts.needle;
  }
}

/** Positions an UnplacedError (or any KilnError) within lines [startLine, endLine]. */
export function placeError(
  e: unknown,
  source: SourceText,
  startLine: number,
  endLine: number,
): unknown {
  if (!(e instanceof KilnError) || e instanceof DockerfileError) return e;
  const needle = e instanceof UnplacedError ? e.needle : undefined;
  const at = locate(source, startLine, endLine, needle);
  return new DockerfileError(
    e.code,
    e.message,
    { source, ...at },
    e.hint === undefined ? { cause: e } : { hint: e.hint, cause: e },
  );
}
