import { test } from "node:test";
import assert from "node:assert/strict";
import {
  cpuVariantFrom,
  defaultPlatform,
  defaultSpec,
  normalize,
  toGoArch,
  toGoOS,
} from "../../../src/platform/index.js";

const AARCH64_CPUINFO = `processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
CPU architecture: 8
`;

const RPI4_ARMV7_CPUINFO = `processor\t: 0
model name\t: ARMv7 Processor rev 3 (v7l)
BogoMIPS\t: 108.00
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
`;

const RPI_ZERO_CPUINFO = `processor\t: 0
model name\t: ARMv6-compatible processor rev 7 (v6l)
BogoMIPS\t: 697.95
Features\t: half thumb fastmult vfp edsp java tls
CPU implementer\t: 0x41
CPU architecture: 7
`;

const X86_CPUINFO = `processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr
`;

// [description, facts, variant]
const variantTable: [string, Parameters<typeof cpuVariantFrom>[0], string][] = [
  ["aarch64 cpuinfo", { goarch: "arm64", cpuinfo: AARCH64_CPUINFO }, "v8"],
  ["armv7 cpuinfo on a 32-bit process", { goarch: "arm", cpuinfo: RPI4_ARMV7_CPUINFO }, "v7"],
  ["Raspberry Pi ARMv6 quirk", { goarch: "arm", cpuinfo: RPI_ZERO_CPUINFO }, "v6"],
  [
    "ARMv6 quirk only applies to 32-bit processes",
    { goarch: "arm64", cpuinfo: RPI_ZERO_CPUINFO },
    "v7",
  ],
  ["lower-case key", { goarch: "arm", cpuinfo: "cpu architecture : 6TEJ\n" }, "v6"],
  ["7M", { goarch: "arm", cpuinfo: "CPU architecture: 7M\n" }, "v7"],
  ["?(12)", { goarch: "arm", cpuinfo: "CPU architecture: ?(12)\n" }, "v7"],
  ["5TE", { goarch: "arm", cpuinfo: "CPU architecture: 5TE\n" }, "v5"],
  ["4T", { goarch: "arm", cpuinfo: "CPU architecture: 4T\n" }, "v4"],
  ["3", { goarch: "arm", cpuinfo: "CPU architecture: 3\n" }, "v3"],
  ["AArch64 value", { goarch: "arm64", cpuinfo: "CPU architecture: AArch64\n" }, "v8"],
  ["unrecognized value", { goarch: "arm", cpuinfo: "CPU architecture: 10\n" }, "unknown"],
  [
    "uname aarch64 fallback (emulated, no field)",
    { goarch: "arm64", cpuinfo: X86_CPUINFO, machine: "aarch64" },
    "v8",
  ],
  ["uname armv7l fallback", { goarch: "arm", machine: "armv7l" }, "v7"],
  ["uname armv6l fallback", { goarch: "arm", cpuinfo: "", machine: "armv6l" }, "v6"],
  ["uname armv8l fallback", { goarch: "arm", machine: "armv8l" }, "v8"],
  ["uname armv9l is unknown", { goarch: "arm", machine: "armv9l" }, "unknown"],
  ["uname that is not ARM", { goarch: "arm64", machine: "x86_64" }, ""],
  ["nothing known", { goarch: "arm" }, ""],
  ["non-ARM process", { goarch: "amd64", cpuinfo: AARCH64_CPUINFO, machine: "aarch64" }, ""],
];

for (const [name, facts, expected] of variantTable) {
  test(`cpuVariantFrom: ${name}`, () => {
    assert.equal(cpuVariantFrom(facts), expected);
  });
}

// [node arch, endianness, Go arch]
const archTable: [string, "BE" | "LE", string][] = [
  ["x64", "LE", "amd64"],
  ["ia32", "LE", "386"],
  ["arm", "LE", "arm"],
  ["arm64", "LE", "arm64"],
  ["ppc64", "LE", "ppc64le"],
  ["ppc64", "BE", "ppc64"],
  ["s390x", "BE", "s390x"],
  ["riscv64", "LE", "riscv64"],
  ["loong64", "LE", "loong64"],
  ["mipsel", "LE", "mipsle"],
  ["mips", "BE", "mips"],
];

for (const [nodeArch, endianness, goArch] of archTable) {
  test(`toGoArch(${nodeArch}, ${endianness}) = ${goArch}`, () => {
    assert.equal(toGoArch(nodeArch, endianness), goArch);
  });
}

test("toGoOS maps Node platform names to GOOS", () => {
  assert.equal(toGoOS("linux"), "linux");
  assert.equal(toGoOS("darwin"), "darwin");
  assert.equal(toGoOS("win32"), "windows");
  assert.equal(toGoOS("sunos"), "solaris");
  assert.equal(toGoOS("freebsd"), "freebsd");
});

test("defaultSpec describes this machine; defaultPlatform is its normalized form", () => {
  const spec = defaultSpec();
  assert.equal(spec.os, toGoOS(process.platform));
  assert.equal(spec.architecture, toGoArch(process.arch));
  if (spec.architecture !== "arm" && spec.architecture !== "arm64")
    assert.equal(spec.variant, undefined);
  assert.deepEqual(defaultPlatform(), normalize(spec));
  // Callers get copies, so they cannot corrupt the cached host.
  spec.os = "changed";
  assert.notEqual(defaultSpec().os, "changed");
});
