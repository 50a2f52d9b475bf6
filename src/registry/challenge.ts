/** An authentication challenge from a `WWW-Authenticate` header (RFC 7235). */
export interface Challenge {
  /** Lower-cased scheme, e.g. "bearer" or "basic". */
  scheme: string;
  /** Parameters with lower-cased names, e.g. realm, service, scope. */
  params: Record<string, string>;
}

/**
 * Parse a `WWW-Authenticate` header value, which may hold several challenges:
 * `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull", Basic realm="x"`.
 * Quoted strings may contain commas and backslash escapes. Unparseable tails are ignored.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = (): void => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipSpace();
    if (header[i] === ",") {
      i++;
      continue;
    }
    const word = token();
    if (word === "") break;
    skipSpace();
    if (header[i] === "=" && current !== undefined) {
      i++;
      skipSpace();
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i]!;
          i++;
        }
        i++;
      } else {
        // Lenient: unquoted values may hold URL characters some registries send unquoted.
        const start = i;
        while (i < n && header[i] !== "," && header[i] !== " " && header[i] !== "\t") i++;
        value = header.slice(start, i);
      }
      current.params[word.toLowerCase()] = value;
    } else {
      // A token not followed by "=" starts a new challenge (a token68 after it is ignored).
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}
