/**
 * Character-class helpers with Go's definitions. BuildKit's parser is written against Go's
 * `unicode.IsSpace` and `strings.TrimSpace`, which differ from JavaScript's `\s` and `trim()`
 * (JS counts U+FEFF as space, Go counts U+0085); using Go's sets keeps splitting identical.
 */

/** Go's unicode.IsSpace for one UTF-16 code unit (no astral code point is a space). */
export function isGoSpace(c: number): boolean {
  if (c <= 0xff) {
    return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0x85 || c === 0xa0;
  }
  return (
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

export function trimLeftGoSpace(s: string): string {
  let i = 0;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  return i === 0 ? s : s.slice(i);
}

export function trimGoSpace(s: string): string {
  let end = s.length;
  while (end > 0 && isGoSpace(s.charCodeAt(end - 1))) end--;
  let start = 0;
  while (start < end && isGoSpace(s.charCodeAt(start))) start++;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/** Removes every trailing CR and LF (Go's bytes.TrimRight(s, "\r\n")). */
export function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x0a && c !== 0x0d) break;
    end--;
  }
  return end === s.length ? s : s.slice(0, end);
}

/** Splits on BuildKit's `[\t\v\f\r ]+` separator; `limit` 2 gives head and rest like Go's Split(s, 2). */
const ASCII_WS = /[\t\v\f\r ]+/;
export function splitAsciiWhitespace(s: string, limit?: 2): string[] {
  if (limit === 2) {
    const m = ASCII_WS.exec(s);
    if (m === null) return [s];
    return [s.slice(0, m.index), s.slice(m.index + m[0].length)];
  }
  return s.split(ASCII_WS);
}

/** Levenshtein distance over code points (unit costs), as BuildKit's suggestion helper uses. */
export function levenshtein(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[y.length]!;
}

/**
 * The closest option within edit distance 2, or undefined. An exact match means the error is
 * unrelated to spelling, so no suggestion (BuildKit's util/suggest rules).
 */
export function suggest(
  value: string,
  options: readonly string[],
  caseSensitive: boolean,
): string | undefined {
  const v = caseSensitive ? value : value.toLowerCase();
  let best: string | undefined;
  let min = 3;
  for (const option of options) {
    const o = caseSensitive ? option : option.toLowerCase();
    if (o === v) return undefined;
    const d = levenshtein(v, o);
    if (d < min) {
      min = d;
      best = caseSensitive ? o : matchCase(o, value);
    }
  }
  return best;
}

function matchCase(candidate: string, original: string): string {
  if (original === original.toLowerCase()) return candidate.toLowerCase();
  if (original === original.toUpperCase()) return candidate.toUpperCase();
  return candidate;
}
