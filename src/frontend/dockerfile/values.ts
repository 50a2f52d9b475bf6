/**
 * Value grammars BuildKit takes from Go's standard library and docker/go-units, reimplemented
 * so the same flag values are accepted: time.ParseDuration, strconv.ParseBool/ParseUint/
 * ParseInt, units.RAMInBytes. Each returns undefined for invalid input.
 */

const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  "\u00b5s": 1_000n,
  "\u03bcs": 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_INT64 = (1n << 63n) - 1n;

/** Go's time.ParseDuration, in nanoseconds: "1h2m", "1.5s", "300ms", "-2us", "0". */
export function parseGoDuration(input: string): number | undefined {
  let s = input;
  let neg = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    neg = s.startsWith("-");
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") return undefined;
  let total = 0n;
  while (s !== "") {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(s)!;
    const intPart = m[1]!;
    const frac = m[2];
    if (intPart === "" && (frac === undefined || frac === "")) return undefined;
    s = s.slice(m[0].length);
    const u = /^[^0-9.]+/.exec(s);
    if (u === null) return undefined; // missing unit
    const unit = UNIT_NS[u[0]];
    if (unit === undefined) return undefined;
    s = s.slice(u[0].length);
    const whole = intPart === "" ? 0n : BigInt(intPart);
    if (whole > MAX_INT64 / unit) return undefined;
    let v = whole * unit;
    if (frac !== undefined && frac !== "") {
      // Go keeps fraction digits until they would overflow int64, then scales by float.
      const digits = frac.slice(0, 18);
      const f = Number(digits);
      const scale = 10 ** digits.length;
      v += BigInt(Math.trunc(f * (Number(unit) / scale)));
      if (v > MAX_INT64) return undefined;
    }
    total += v;
    if (total > MAX_INT64 + (neg ? 1n : 0n)) return undefined;
  }
  return Number(neg ? -total : total);
}

/** Go's strconv.ParseBool. */
export function parseGoBool(s: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  return undefined;
}

/** Go's strconv.ParseUint(s, base, 32) for base 8 or 10 (no sign, no prefix, no underscores). */
export function parseGoUint32(s: string, base: 8 | 10): number | undefined {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) return undefined;
  const v = parseInt(s, base);
  return v <= 0xffffffff ? v : undefined;
}

/** Go's strconv.ParseInt(s, 10, 32). */
export function parseGoInt32(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const v = Number(s);
  return v >= -0x80000000 && v <= 0x7fffffff ? v : undefined;
}

const RAM_UNITS: Record<string, number> = {
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/** docker/go-units RAMInBytes: "64m", "1.5g", "512kb", "1GiB", "100" (bytes), binary units. */
export function parseRamInBytes(input: string): number | undefined {
  let sep = -1;
  for (let i = input.length - 1; i >= 0; i--) {
    if ("0123456789. ".includes(input[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep < 0) return undefined;
  const num = input[sep] === " " ? input.slice(0, sep) : input.slice(0, sep + 1);
  let sfx = input.slice(sep + 1);
  if (!/^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$/.test(num)) return undefined;
  let size = Number(num);
  if (size < 0) return undefined;
  if (sfx !== "") {
    if (sfx.length > 3) return undefined;
    sfx = sfx.toLowerCase();
    if (sfx[0] === "b") {
      if (sfx.length > 1) return undefined;
    } else {
      const mul = RAM_UNITS[sfx[0]!];
      if (mul === undefined) return undefined;
      size *= mul;
      if (sfx.length === 2 && sfx[1] !== "b") return undefined;
      if (sfx.length === 3 && sfx.slice(1) !== "ib") return undefined;
    }
  }
  return Math.trunc(size);
}
