/**
 * Go's fmt renderings that BuildKit writes into image history (`CMD %q`, `VOLUME %v`,
 * `HEALTHCHECK %+v` durations), so kiln's history text reads the same.
 */

/** strconv.Quote for the strings Dockerfiles contain. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c === 7) out += "\\a";
    else if (c === 8) out += "\\b";
    else if (c === 12) out += "\\f";
    else if (c === 11) out += "\\v";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out + '"';
}

/** `%q` of a []string: `["/bin/sh" "-c" "echo hi"]`. */
export function goQuoted(list: readonly string[]): string {
  return `[${list.map(goQuote).join(" ")}]`;
}

/** `%v` of a []string: `[/data /cache]`. */
export function goList(list: readonly string[]): string {
  return `[${list.join(" ")}]`;
}

/** time.Duration.String() of nanoseconds: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`. */
export function goDuration(ns: number): string {
  if (ns === 0) return "0s";
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    // sub-second: the largest unit that keeps a non-zero integer part
    const [div, unit] = u < 1e3 ? [1, "ns"] : u < 1e6 ? [1e3, "µs"] : [1e6, "ms"];
    out = trimFraction(u / div) + unit;
  } else {
    const h = Math.floor(u / 3.6e12);
    u -= h * 3.6e12;
    const m = Math.floor(u / 6e10);
    u -= m * 6e10;
    const s = trimFraction(u / 1e9) + "s";
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}

function trimFraction(x: number): string {
  return x.toFixed(9).replace(/\.?0+$/, "");
}
