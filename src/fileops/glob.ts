/**
 * Path patterns as COPY/ADD sources use them: Go `filepath.Match` per segment (`*`, `?`,
 * `[a-z]`, `[^a]`, `\` escapes) plus `**` spanning any number of segments.
 */

export function hasWildcard(p: string): boolean {
  return /[*?[]/.test(p);
}

function segmentRegExp(seg: string): RegExp {
  let re = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\" && i + 1 < seg.length) re += escapeRe(seg[++i]!);
    else if (c === "[") {
      const end = seg.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = seg.slice(i + 1, end);
      if (body.startsWith("^")) body = "^" + body.slice(1).replace(/\\/g, "\\\\");
      else body = body.replace(/\\/g, "\\\\");
      re += `[${body}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A matcher for slash-separated relative paths (no leading slash). */
export function compileGlob(pattern: string): (rel: string) => boolean {
  const segs = pattern.split("/").filter((s) => s !== "" && s !== ".");
  const parts = segs.map((s) => (s === "**" ? null : segmentRegExp(s)));
  const match = (pi: number, names: string[], ni: number): boolean => {
    if (pi === parts.length) return ni === names.length;
    const part = parts[pi];
    if (part === null) {
      for (let k = ni; k <= names.length; k++) if (match(pi + 1, names, k)) return true;
      return false;
    }
    if (ni === names.length || part === undefined) return false;
    return part.test(names[ni]!) && match(pi + 1, names, ni + 1);
  };
  return (rel) => match(0, rel.split("/").filter(Boolean), 0);
}

/** The leading segments of a pattern that contain no wildcard: where a walk can start. */
export function literalPrefix(pattern: string): string {
  const out: string[] = [];
  for (const s of pattern.split("/").filter(Boolean)) {
    if (hasWildcard(s)) break;
    out.push(s);
  }
  return out.join("/");
}
