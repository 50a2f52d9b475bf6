/**
 * The x86-64 microarchitecture level (psABI v1–v4) from /proc/cpuinfo flags, with the feature
 * sets go-archvariant uses, so that a native amd64 host reports the same `linux/amd64/vN`
 * platforms as BuildKit. Linux spells SSE3 `pni`, LZCNT `abm`, and drops `avx*` when the OS
 * has not enabled the YMM/ZMM state, which stands in for the OSXSAVE/XGETBV checks.
 */

const LEVEL_FLAGS: readonly (readonly string[])[] = [
  ["pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm"],
  ["fma", "movbe", "xsave", "avx", "f16c", "bmi1", "avx2", "bmi2", "abm"],
  ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"],
];

/** Level 1–4 of the first CPU in `cpuinfo`; 1 when there is no flags line. */
export function amd64LevelFromCpuinfo(cpuinfo: string): number {
  const line = cpuinfo.split("\n").find((l) => /^flags\s*:/.test(l));
  const flags = new Set(
    line === undefined
      ? []
      : line
          .slice(line.indexOf(":") + 1)
          .trim()
          .split(/\s+/),
  );
  let level = 1;
  for (const needed of LEVEL_FLAGS) {
    if (!needed.every((f) => flags.has(f))) break;
    level++;
  }
  return level;
}
