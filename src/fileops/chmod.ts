import { KilnError } from "../errors.js";

/**
 * `--chmod` values: octal (`755`, `0644`) or symbolic (`u+x,g-w`, `a=rX`), as BuildKit
 * accepts them. Returns a function from the current mode to the new one.
 */
export function parseChmod(spec: string): (current: number, isDir: boolean) => number {
  if (/^[0-7]{1,4}$/.test(spec)) {
    const mode = parseInt(spec, 8);
    return () => mode;
  }
  const clauses = spec.split(",").map((c) => {
    const m = /^([ugoa]*)([-+=])([rwxXst]*)$/.exec(c);
    if (!m) {
      throw new KilnError("E_CHMOD", `invalid --chmod value ${JSON.stringify(spec)}`, {
        hint: "use an octal mode like 755 or a symbolic one like u+x,go-w",
      });
    }
    return { who: m[1] || "a", op: m[2]!, perms: m[3]! };
  });
  return (current, isDir) => {
    let mode = current;
    for (const { who, op, perms } of clauses) {
      let mask = 0;
      const all = who.includes("a");
      const u = all || who.includes("u");
      const g = all || who.includes("g");
      const o = all || who.includes("o");
      const execIfX = isDir || (current & 0o111) !== 0;
      for (const p of perms) {
        const bits = p === "r" ? 4 : p === "w" ? 2 : p === "x" || (p === "X" && execIfX) ? 1 : 0;
        if (u) mask |= bits << 6;
        if (g) mask |= bits << 3;
        if (o) mask |= bits;
        if (p === "s") mask |= (u ? 0o4000 : 0) | (g ? 0o2000 : 0);
        if (p === "t") mask |= 0o1000;
      }
      const scope = (u ? 0o4700 : 0) | (g ? 0o2070 : 0) | (o ? 0o1007 : 0);
      if (op === "+") mode |= mask;
      else if (op === "-") mode &= ~mask;
      else mode = (mode & ~scope) | mask;
    }
    return mode;
  };
}
