/**
 * `--chmod` values as BuildKit applies them: an octal number (at most 07777) replaces the
 * permission bits; anything else is a chmod(1)-style symbolic mode evaluated like BSD
 * setmode(3) with a zero umask (the library BuildKit uses), including its quirks: `X` only
 * counts with `+`, and copies such as `g=u` read the mode as modified so far.
 */
import { KilnError } from "../errors.js";

/** Maps a file's current mode to its new one; `octal` is set for numeric specs. */
export type ChmodFn = ((current: number, isDir: boolean) => number) & { octal?: number };

const SUID = 0o4000;
const SGID = 0o2000;
const STICKY = 0o1000;
const STANDARD = SUID | SGID | 0o777;

type Cmd =
  | { op: "+" | "-" | "X"; bits: number }
  | { op: "u" | "g" | "o"; bits: number; set: boolean; clear: boolean; classes: number };

function invalid(spec: string): KilnError {
  return new KilnError("E_CHMOD", `invalid --chmod value ${JSON.stringify(spec)}`, {
    hint: "use an octal mode between 0 and 07777 (e.g. 755) or a symbolic one (e.g. u+x,go-w)",
  });
}

function addCmd(cmds: Cmd[], op: string, who: number, arg: number | string): void {
  if (op === "=") {
    cmds.push({ op: "-", bits: who || STANDARD });
    op = "+";
  }
  if (op === "+" || op === "-" || op === "X") {
    cmds.push({ op, bits: who ? who & (arg as number) : (arg as number) });
    return;
  }
  const classes =
    who === 0
      ? 0b111
      : (who & 0o400 ? 0b100 : 0) | (who & 0o040 ? 0b010 : 0) | (who & 0o004 ? 1 : 0);
  cmds.push({
    op: op as "u" | "g" | "o",
    bits: who === 0 ? 0o7777 : 0xffff,
    set: arg !== "-",
    clear: arg !== "+",
    classes,
  });
}

function parseSymbolic(spec: string): Cmd[] {
  const cmds: Cmd[] = [];
  let s = spec;
  let equalOpDone = false;
  for (;;) {
    let who = 0;
    for (;;) {
      if (s === "") throw invalid(spec);
      const c = s[0]!;
      if (c === "a") who |= STANDARD;
      else if (c === "u") who |= SUID | 0o700;
      else if (c === "g") who |= SGID | 0o070;
      else if (c === "o") who |= 0o007;
      else break;
      s = s.slice(1);
    }
    for (;;) {
      const op = s[0];
      s = s.slice(1);
      if (op !== "+" && op !== "-" && op !== "=") throw invalid(spec);
      if (op === "=") equalOpDone = false;
      who &= ~STICKY;
      let perm = 0;
      let permX = 0;
      for (; ; s = s.slice(1)) {
        const b = s[0];
        if (b === "r") perm |= 0o444;
        else if (b === "w") perm |= 0o222;
        else if (b === "x") perm |= 0o111;
        else if (b === "s") {
          if (who === 0 || (who & ~0o007) !== 0) perm |= SUID | SGID;
        } else if (b === "t") {
          if (who === 0 || (who & ~0o007) !== 0) {
            who |= STICKY;
            perm |= STICKY;
          }
        } else if (b === "X") {
          if (op === "+") permX = 0o111;
        } else if (b === "u" || b === "g" || b === "o") {
          if (perm !== 0) addCmd(cmds, op, who, perm);
          perm = 0;
          if (op === "=") equalOpDone = true;
          if (permX !== 0) addCmd(cmds, "X", who, permX);
          permX = 0;
          addCmd(cmds, b, who, op);
        } else {
          if (perm !== 0 || (op === "=" && !equalOpDone)) {
            if (op === "=") equalOpDone = true;
            addCmd(cmds, op, who, perm);
          }
          if (permX !== 0) addCmd(cmds, "X", who, permX);
          break;
        }
      }
      if (s === "" || s[0] === ",") break;
    }
    if (s === "") return cmds;
    s = s.slice(1);
  }
}

function apply(cmds: Cmd[], mode: number, isDir: boolean): number {
  const original = mode & 0o7777;
  let m = original;
  for (const c of cmds) {
    if (c.op === "u" || c.op === "g" || c.op === "o") {
      const shift = c.op === "u" ? 6 : c.op === "g" ? 3 : 0;
      const value = (m >> shift) & 0o7;
      const shifts = [6, 3, 0].filter((_, i) => (c.classes & (0b100 >> i)) !== 0);
      if (c.clear) {
        const clr = c.set ? 0o7 : value;
        for (const sh of shifts) m &= ~((clr << sh) & c.bits);
      }
      if (c.set) for (const sh of shifts) m |= (value << sh) & c.bits;
    } else if (c.op === "+") m |= c.bits;
    else if (c.op === "-") m &= ~c.bits;
    else if ((original & 0o111) !== 0 || isDir) m |= c.bits;
  }
  return m & 0o7777;
}

/** Parses a `--chmod` value; throws E_CHMOD for one BuildKit would reject. */
export function parseChmod(spec: string): ChmodFn {
  if (/^[0-9]/.test(spec)) {
    if (!/^[0-7]+$/.test(spec) || parseInt(spec, 8) > 0o7777) throw invalid(spec);
    const octal = parseInt(spec, 8);
    return Object.assign(() => octal, { octal });
  }
  const cmds = parseSymbolic(spec);
  return (current, isDir) => apply(cmds, current, isDir);
}
