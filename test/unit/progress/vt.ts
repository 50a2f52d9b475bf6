/**
 * A minimal terminal for tests: enough of VT100 (CR, LF, cursor up, erase line / below) to
 * replay a renderer's output and see the screen a user would see, including the limit that the
 * cursor cannot move above the top of the visible rows.
 */
export function replay(output: string, rows: number): string[] {
  const lines: string[] = [""];
  let row = 0;
  let col = 0;
  let lowest = 0;
  const re = /\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+/g; // eslint-disable-line no-control-regex
  for (const m of output.matchAll(re)) {
    const tok = m[0];
    if (tok === "\r") {
      col = 0;
    } else if (tok === "\n") {
      row++;
      col = 0;
      if (row >= lines.length) lines.push("");
      lowest = Math.max(lowest, row);
    } else if (m[2] !== undefined) {
      const n = Number(m[1] || "1");
      if (m[2] === "A") row = Math.max(Math.max(0, lowest - rows + 1), row - n);
      else if (m[2] === "K") lines[row] = lines[row]!.slice(0, col);
      else if (m[2] === "J") {
        lines[row] = lines[row]!.slice(0, col);
        for (let i = row + 1; i < lines.length; i++) lines[i] = "";
      }
      // Other sequences (colors, cursor visibility) do not move anything.
    } else {
      const cur = lines[row]!.padEnd(col);
      lines[row] = cur.slice(0, col) + tok + cur.slice(col + tok.length);
      col += tok.length;
    }
  }
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}
