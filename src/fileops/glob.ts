/**
 * Source-path wildcards as BuildKit resolves COPY/ADD sources: Go's `filepath.Match` applied
 * to the whole relative path. `*` and `?` never cross a `/`, so `**` means the same as `*`
 * here (it only spans directories in --exclude / --parents patterns, see patterns.ts).
 */

/** Whether a path contains `*`, `?` or `[` that is not escaped with `\`. */
export function hasWildcard(p: string): boolean {
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "\\") i++;
    else if (c === "*" || c === "?" || c === "[") return true;
  }
  return false;
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/** One `[...]` class starting at pattern[i] === "["; returns [regexp, next index] or null. */
function charClass(pattern: string, i: number): [string, number] | null {
  let j = i + 1;
  let re = "[";
  if (pattern[j] === "^") {
    re += "^";
    j++;
  }
  let ranges = 0;
  const esc = (): string | null => {
    const c = pattern[j];
    if (c === undefined || c === "-" || c === "]") return null;
    if (c === "\\") {
      j++;
      if (pattern[j] === undefined) return null;
    }
    return pattern[j++]!;
  };
  for (;;) {
    if (pattern[j] === "]" && ranges > 0) return [re + "]", j + 1];
    const lo = esc();
    if (lo === null) return null;
    let hi = lo;
    if (pattern[j] === "-") {
      j++;
      const h = esc();
      if (h === null) return null;
      hi = h;
    }
    if (hi < lo) return null;
    re += lo === hi ? escapeRe(lo) : `${escapeRe(lo)}-${escapeRe(hi)}`;
    ranges++;
  }
}

/** The RegExp for a `filepath.Match` pattern, or null for a malformed one (matches nothing). */
export function globRegExp(pattern: string): RegExp | null {
  let re = "";
  for (let i = 0; i < pattern.length;) {
    const c = pattern[i]!;
    if (c === "*") {
      re += "[^/]*";
      i++;
    } else if (c === "?") {
      re += "[^/]";
      i++;
    } else if (c === "\\") {
      if (i + 1 >= pattern.length) return null;
      re += escapeRe(pattern[i + 1]!);
      i += 2;
    } else if (c === "[") {
      const cls = charClass(pattern, i);
      if (cls === null) return null;
      re += cls[0];
      i = cls[1];
    } else {
      re += escapeRe(c);
      i++;
    }
  }
  return new RegExp(`^${re}$`, "s");
}

/** A matcher for slash-separated relative paths with Go `filepath.Match` semantics. */
export function compileGlob(pattern: string): (rel: string) => boolean {
  const re = globRegExp(pattern);
  return (rel) => re !== null && re.test(rel);
}

/**
 * Splits a source path at its first wildcard component: the literal directory to walk from
 * and the pattern to match below it ("" when there is no wildcard).
 */
export function splitWildcards(p: string): { dir: string; pattern: string } {
  const parts = p.split("/").filter((s) => s !== "" && s !== ".");
  const k = parts.findIndex(hasWildcard);
  if (k < 0) return { dir: parts.join("/"), pattern: "" };
  return { dir: parts.slice(0, k).join("/"), pattern: parts.slice(k).join("/") };
}
