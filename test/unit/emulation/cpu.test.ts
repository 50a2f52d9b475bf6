import { test } from "node:test";
import assert from "node:assert/strict";
import { amd64LevelFromCpuinfo } from "../../../src/emulation/index.js";

const V1 =
  "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat clflush mmx fxsr sse sse2 syscall nx lm";
const V2 = `${V1} pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm`;
const V3 = `${V2} fma movbe xsave avx f16c bmi1 avx2 bmi2 abm`;
const V4 = `${V3} avx512f avx512dq avx512cd avx512bw avx512vl`;
const cpuinfo = (flags: string) =>
  `processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: ${flags}\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: ${V1}\n`;

test("x86-64 levels follow the psABI feature sets", () => {
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V1)), 1);
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V2)), 2);
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V3)), 3);
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V4)), 4);
});

test("one missing feature caps the level, and levels cannot be skipped", () => {
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V2.replace(" popcnt", ""))), 1);
  assert.equal(amd64LevelFromCpuinfo(cpuinfo(V3.replace(" abm", ""))), 2); // no LZCNT
  assert.equal(
    amd64LevelFromCpuinfo(cpuinfo(`${V2} avx512f avx512dq avx512cd avx512bw avx512vl`)),
    2,
  );
  assert.equal(amd64LevelFromCpuinfo(""), 1);
});
