/**
 * Probe executables: for each architecture, the smallest static ELF that calls exit. If the
 * kernel runs one (natively or through a binfmt_misc handler), that architecture is supported.
 * Instruction bytes were checked with `llvm-mc -show-encoding` (loongarch by hand against the
 * ISA manual) and every probe is executed by test/integration/emulation-probes.test.ts.
 */
import {
  buildElf,
  ELFCLASS32,
  ELFCLASS64,
  ELFDATA2LSB,
  ELFDATA2MSB,
  EM_386,
  EM_AARCH64,
  EM_ARM,
  EM_LOONGARCH,
  EM_MIPS,
  EM_PPC64,
  EM_RISCV,
  EM_S390,
  EM_X86_64,
  type ElfSpec,
} from "./elf.js";

/** Exit code of the amd64 probe: 64 + the x86-64 microarchitecture level (v1 or v2). */
export const AMD64_LEVEL_EXIT_BASE = 64;

/** Serialises 32-bit instruction words in the target's byte order. */
function words(ws: number[], le: boolean): Uint8Array {
  const out = new Uint8Array(ws.length * 4);
  const v = new DataView(out.buffer);
  ws.forEach((w, i) => {
    v.setUint32(i * 4, w, le);
  });
  return out;
}

const amd64Code = Uint8Array.from([
  // Exits 65 (v1) or 66 (v2). v2 needs CPUID.1:ECX SSE3(0) SSSE3(9) CX16(13) SSE4.1(19)
  // SSE4.2(20) POPCNT(23) = 0x982201, and CPUID.80000001h:ECX LAHF-SAHF(0).
  ...[0xb8, 0x01, 0x00, 0x00, 0x00], //       mov  eax, 1
  ...[0x0f, 0xa2], //                         cpuid
  ...[0xbf, 0x41, 0x00, 0x00, 0x00], //       mov  edi, 65
  ...[0x81, 0xe1, 0x01, 0x22, 0x98, 0x00], // and  ecx, 0x982201
  ...[0x81, 0xf9, 0x01, 0x22, 0x98, 0x00], // cmp  ecx, 0x982201
  ...[0x75, 0x11], //                         jne  done (+17)
  ...[0xb8, 0x01, 0x00, 0x00, 0x80], //       mov  eax, 0x80000001
  ...[0x0f, 0xa2], //                         cpuid
  ...[0xf6, 0xc1, 0x01], //                   test cl, 1
  ...[0x74, 0x05], //                         jz   done (+5)
  ...[0xbf, 0x42, 0x00, 0x00, 0x00], //       mov  edi, 66
  ...[0xb8, 0x3c, 0x00, 0x00, 0x00], // done: mov  eax, 60      ; exit
  ...[0x0f, 0x05], //                         syscall
]);

const i386Code = Uint8Array.from([
  ...[0x31, 0xdb], //                   xor  ebx, ebx
  ...[0xb8, 0x01, 0x00, 0x00, 0x00], // mov  eax, 1   ; exit
  ...[0xcd, 0x80], //                   int  0x80
]);

/** MIPS n64: syscall number in $v0 (5000 + 58 = exit), argument in $a0. */
const mips64Words = [
  0x240213c2, // addiu $v0, $zero, 5058
  0x24040000, // addiu $a0, $zero, 0
  0x0000000c, // syscall
];

type ProbeSpec = Omit<ElfSpec, "code"> & { code: () => Uint8Array };

const specs: Record<string, ProbeSpec> = {
  amd64: { elfClass: ELFCLASS64, data: ELFDATA2LSB, machine: EM_X86_64, code: () => amd64Code },
  "386": { elfClass: ELFCLASS32, data: ELFDATA2LSB, machine: EM_386, code: () => i386Code },
  arm64: {
    elfClass: ELFCLASS64,
    data: ELFDATA2LSB,
    machine: EM_AARCH64,
    code: () =>
      words(
        [
          0xd2800000, // mov x0, #0
          0xd2800ba8, // mov x8, #93   ; exit
          0xd4000001, // svc #0
        ],
        true,
      ),
  },
  arm: {
    elfClass: ELFCLASS32,
    data: ELFDATA2LSB,
    machine: EM_ARM,
    flags: 0x05000000, // EABI version 5: syscall number in r7, not in the svc immediate
    code: () =>
      words(
        [
          0xe3a00000, // mov r0, #0
          0xe3a07001, // mov r7, #1    ; exit
          0xef000000, // svc #0
        ],
        true,
      ),
  },
  riscv64: {
    elfClass: ELFCLASS64,
    data: ELFDATA2LSB,
    machine: EM_RISCV,
    flags: 0x4, // EF_RISCV_FLOAT_ABI_DOUBLE, as Linux distributions build
    code: () =>
      words(
        [
          0x00000513, // li a0, 0
          0x05d00893, // li a7, 93     ; exit
          0x00000073, // ecall
        ],
        true,
      ),
  },
  ppc64le: {
    elfClass: ELFCLASS64,
    data: ELFDATA2LSB,
    machine: EM_PPC64,
    flags: 0x2, // ELFv2 ABI: e_entry is code, not a function descriptor
    code: () =>
      words(
        [
          0x38000001, // li r0, 1      ; exit
          0x38600000, // li r3, 0
          0x44000002, // sc
        ],
        true,
      ),
  },
  s390x: {
    elfClass: ELFCLASS64,
    data: ELFDATA2MSB,
    machine: EM_S390,
    code: () =>
      Uint8Array.from([
        ...[0xa7, 0x29, 0x00, 0x00], // lghi %r2, 0
        ...[0x0a, 0x01], //             svc  1        ; exit (number in the immediate)
      ]),
  },
  mips64le: {
    elfClass: ELFCLASS64,
    data: ELFDATA2LSB,
    machine: EM_MIPS,
    flags: 0x80000001, // EF_MIPS_ARCH_64R2 | EF_MIPS_NOREORDER
    code: () => words(mips64Words, true),
  },
  mips64: {
    elfClass: ELFCLASS64,
    data: ELFDATA2MSB,
    machine: EM_MIPS,
    flags: 0x80000001,
    code: () => words(mips64Words, false),
  },
  loong64: {
    elfClass: ELFCLASS64,
    data: ELFDATA2LSB,
    machine: EM_LOONGARCH,
    flags: 0x43, // LP64D ABI, object ABI v1
    code: () =>
      words(
        [
          0x02800004, // addi.w $a0, $zero, 0
          0x0281740b, // addi.w $a7, $zero, 93   ; exit
          0x002b0000, // syscall 0
        ],
        true,
      ),
  },
};

/** Architectures (Go names) that have a probe, in BuildKit's probing order. */
export const PROBE_ARCHITECTURES: readonly string[] = [
  "amd64",
  "arm64",
  "riscv64",
  "ppc64le",
  "s390x",
  "386",
  "mips64le",
  "mips64",
  "loong64",
  "arm",
];

/** The probe executable for a Go architecture, or undefined if there is none. */
export function probeBinary(architecture: string): Uint8Array | undefined {
  const spec = specs[architecture];
  if (spec === undefined) return undefined;
  // built once: every binfmt entry read is matched against each probe
  let elf = built.get(architecture);
  if (elf === undefined) {
    elf = buildElf({ ...spec, code: spec.code() });
    built.set(architecture, elf);
  }
  return elf;
}

const built = new Map<string, Uint8Array>();
