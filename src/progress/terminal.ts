/** The little ANSI a live terminal view needs: cursor moves, colors, and display width. */

export const ESC = "\x1b[";
export const cursorUp = (n: number): string => (n > 0 ? `${ESC}${n}A` : "");
export const eraseLineEnd = `${ESC}K`;
export const eraseDown = `${ESC}J`;
export const hideCursor = `${ESC}?25l`;
export const showCursor = `${ESC}?25h`;

export type Style = "blue" | "red" | "yellow" | "dim" | "bold";
const codes: Record<Style, [number, number]> = {
  blue: [34, 39],
  red: [31, 39],
  yellow: [33, 39],
  dim: [2, 22],
  bold: [1, 22],
};

export function paint(enabled: boolean, style: Style, s: string): string {
  if (!enabled || s === "") return s;
  const [on, off] = codes[style];
  return `${ESC}${on}m${s}${ESC}${off}m`;
}

/** `NO_COLOR` (any non-empty value, see no-color.org) turns colors off. */
export function colorEnabled(env: NodeJS.ProcessEnv): boolean {
  return (env.NO_COLOR ?? "") === "";
}

// CSI (…m, …K, cursor moves), OSC (titles, hyperlinks) and two-byte escapes.
// eslint-disable-next-line no-control-regex
const ansiPattern = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/**
 * Turns one line of process output into something safe to draw in a fixed cell: escapes
 * dropped, only the text after the last carriage return (progress bars redraw that way), tabs
 * expanded, other control characters removed.
 */
export function sanitizeLine(s: string): string {
  const noAnsi = s.replace(ansiPattern, "");
  const afterCr = noAnsi.slice(noAnsi.lastIndexOf("\r") + 1);
  // eslint-disable-next-line no-control-regex
  return afterCr.replace(/\t/g, "    ").replace(/[\x00-\x1f\x7f-\x9f]/g, "");
}

/** Columns a code point occupies: 0 for combining marks, 2 for East Asian wide and emoji. */
function cellWidth(cp: number): number {
  if (
    (cp >= 0x300 && cp <= 0x36f) ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x20d0 && cp <= 0x20ff) ||
    (cp >= 0xfe00 && cp <= 0xfe0f)
  ) {
    return 0;
  }
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f680 && cp <= 0x1f6ff) ||
    (cp >= 0x1f900 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Display width of text without escape sequences. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += cellWidth(ch.codePointAt(0)!);
  return w;
}

/** The longest prefix of `s` that fits in `width` columns (a wide char never gets split). */
export function truncate(s: string, width: number): string {
  let w = 0;
  let out = "";
  for (const ch of s) {
    const cw = cellWidth(ch.codePointAt(0)!);
    if (w + cw > width) break;
    w += cw;
    out += ch;
  }
  return out;
}

/**
 * `left` cut to fit, then `right` flush against the right edge, in `width - 1` columns: writing
 * into the last column makes some terminals wrap, which would break the cursor arithmetic.
 */
export function fitLine(left: string, right: string, width: number): string {
  const room = width - 1 - displayWidth(right) - (right === "" ? 0 : 1);
  const l = truncate(left, Math.max(0, room));
  if (right === "") return l;
  return l + " ".repeat(Math.max(1, width - 1 - displayWidth(l) - displayWidth(right))) + right;
}
