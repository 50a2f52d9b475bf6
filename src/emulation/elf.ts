/**
 * Just enough ELF: build a one-segment static executable (for the platform probes) and read
 * an executable's header (to tell which architecture a binary in a rootfs was built for).
 */

export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const ELFDATA2MSB = 2;

export const EM_386 = 3;
export const EM_MIPS = 8;
export const EM_PPC = 20;
export const EM_PPC64 = 21;
export const EM_S390 = 22;
export const EM_ARM = 40;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
export const EM_RISCV = 243;
export const EM_LOONGARCH = 258;

const ET_EXEC = 2;
const PT_LOAD = 1;
const PT_INTERP = 3;
const PF_X = 1;
const PF_R = 4;

export interface ElfSpec {
  elfClass: typeof ELFCLASS32 | typeof ELFCLASS64;
  data: typeof ELFDATA2LSB | typeof ELFDATA2MSB;
  machine: number;
  flags?: number;
  /** Machine code; execution starts at its first byte. */
  code: Uint8Array;
}

/** Where the single PT_LOAD segment (the whole file) is mapped. */
const LOAD_ADDRESS = 0x400000;

/**
 * A static ET_EXEC: ELF header, one PT_LOAD program header mapping the whole file R+X, then
 * the code. Header sizes (52+32 / 64+56) keep the code 4-byte aligned for RISC ISAs.
 */
export function buildElf(spec: ElfSpec): Uint8Array {
  const is64 = spec.elfClass === ELFCLASS64;
  const le = spec.data === ELFDATA2LSB;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const codeOffset = ehsize + phentsize;
  const size = codeOffset + spec.code.length;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  const u16 = (o: number, x: number) => {
    v.setUint16(o, x, le);
  };
  const u32 = (o: number, x: number) => {
    v.setUint32(o, x, le);
  };
  const addr = (o: number, x: number) => {
    if (is64) v.setBigUint64(o, BigInt(x), le);
    else v.setUint32(o, x, le);
  };

  buf.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass, spec.data, 1 /* EV_CURRENT */], 0);
  u16(16, ET_EXEC);
  u16(18, spec.machine);
  u32(20, 1); // e_version
  const w = is64 ? 8 : 4;
  addr(24, LOAD_ADDRESS + codeOffset); // e_entry
  addr(24 + w, ehsize); // e_phoff
  addr(24 + 2 * w, 0); // e_shoff
  const o = 24 + 3 * w;
  u32(o, spec.flags ?? 0);
  u16(o + 4, ehsize);
  u16(o + 6, phentsize);
  u16(o + 8, 1); // e_phnum
  u16(o + 10, 0); // e_shentsize
  u16(o + 12, 0); // e_shnum
  u16(o + 14, 0); // e_shstrndx

  const p = ehsize;
  u32(p, PT_LOAD);
  if (is64) {
    u32(p + 4, PF_R | PF_X);
    addr(p + 8, 0); // p_offset
    addr(p + 16, LOAD_ADDRESS); // p_vaddr
    addr(p + 24, LOAD_ADDRESS); // p_paddr
    addr(p + 32, size); // p_filesz
    addr(p + 40, size); // p_memsz
    addr(p + 48, 0x1000); // p_align
  } else {
    u32(p + 4, 0); // p_offset
    u32(p + 8, LOAD_ADDRESS);
    u32(p + 12, LOAD_ADDRESS);
    u32(p + 16, size);
    u32(p + 20, size);
    u32(p + 24, PF_R | PF_X);
    u32(p + 28, 0x1000);
  }
  buf.set(spec.code, codeOffset);
  return buf;
}

export interface ElfHeader {
  elfClass: number;
  data: number;
  /** e_type: 2 = executable, 3 = shared object / PIE. */
  type: number;
  machine: number;
  flags: number;
  /** Program interpreter (PT_INTERP), when the program headers lie within the bytes given. */
  interpreter?: string;
  /** Go architecture name, or undefined for machines kiln does not know. */
  architecture?: string;
}

/** Reads an ELF header; undefined when `buf` does not start with a valid ELF identification. */
export function parseElfHeader(buf: Uint8Array): ElfHeader | undefined {
  if (buf.length < 52 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46)
    return undefined;
  const elfClass = buf[4]!;
  const data = buf[5]!;
  if ((elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) || (data !== 1 && data !== 2))
    return undefined;
  const is64 = elfClass === ELFCLASS64;
  if (is64 && buf.length < 64) return undefined;
  const le = data === ELFDATA2LSB;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const word = (o: number) => (is64 ? Number(v.getBigUint64(o, le)) : v.getUint32(o, le));
  const w = is64 ? 8 : 4;
  const machine = v.getUint16(18, le);
  const header: ElfHeader = {
    elfClass,
    data,
    type: v.getUint16(16, le),
    machine,
    flags: v.getUint32(24 + 3 * w, le),
  };
  const architecture = elfArchitecture(machine, elfClass, data);
  if (architecture !== undefined) header.architecture = architecture;

  const phoff = word(24 + w);
  const phentsize = v.getUint16(24 + 3 * w + 6, le);
  const phnum = v.getUint16(24 + 3 * w + 8, le);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (phentsize < (is64 ? 56 : 32) || p + phentsize > buf.length) break;
    if (v.getUint32(p, le) !== PT_INTERP) continue;
    const off = word(p + (is64 ? 8 : 4));
    const len = word(p + (is64 ? 32 : 16));
    if (off + len <= buf.length) {
      const bytes = buf.subarray(off, off + len);
      const nul = bytes.indexOf(0);
      header.interpreter = Buffer.from(nul >= 0 ? bytes.subarray(0, nul) : bytes).toString();
    } else {
      header.interpreter = "";
    }
  }
  return header;
}

/** The Go architecture name of an ELF machine / class / byte order, as GOARCH spells it. */
export function elfArchitecture(
  machine: number,
  elfClass: number,
  data: number,
): string | undefined {
  const is64 = elfClass === ELFCLASS64;
  const le = data === ELFDATA2LSB;
  switch (machine) {
    case EM_X86_64:
      return is64 ? "amd64" : "amd64p32";
    case EM_386:
      return "386";
    case EM_AARCH64:
      return le ? "arm64" : "arm64be";
    case EM_ARM:
      return le ? "arm" : "armbe";
    case EM_RISCV:
      return is64 ? "riscv64" : "riscv";
    case EM_PPC64:
      return le ? "ppc64le" : "ppc64";
    case EM_PPC:
      return "ppc";
    case EM_S390:
      return is64 ? "s390x" : "s390";
    case EM_MIPS:
      return (is64 ? "mips64" : "mips") + (le ? "le" : "");
    case EM_LOONGARCH:
      return is64 ? "loong64" : "loong32";
    default:
      return undefined;
  }
}
