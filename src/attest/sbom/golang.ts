/**
 * Go modules of a Go binary: the build info Go 1.18+ writes into the ELF `.go.buildinfo`
 * section (the Go version and the module list `go version -m` prints). Only the ELF header,
 * the section table and that section are read; older (pointer-based) build info is skipped.
 */
import { open, type FileHandle } from "node:fs/promises";
import { formatPurl } from "../purl.js";
import type { FoundPackage } from "./catalogers.js";

const MAGIC = Buffer.from("\xff Go buildinf:", "latin1");
/** More than any real section table or build info; a bigger one is not read. */
const MAX_READ = 4 << 20;

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer | undefined> {
  if (len < 0 || len > MAX_READ || !Number.isSafeInteger(pos)) return undefined;
  const buf = Buffer.alloc(len);
  const { bytesRead } = await fh.read(buf, 0, len, pos);
  return bytesRead === len ? buf : undefined;
}

/** The raw `.go.buildinfo` section of an ELF file, or undefined (not ELF, no such section). */
export async function goBuildInfoSection(path: string): Promise<Buffer | undefined> {
  const fh = await open(path, "r");
  try {
    const hdr = await readAt(fh, 0, 64);
    if (hdr === undefined || hdr.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const is64 = hdr[4] === 2;
    const le = hdr[5] === 1;
    const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const word = (b: Buffer, o: number): number =>
      is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o);
    const shoff = word(hdr, is64 ? 0x28 : 0x20);
    const shentsize = u16(hdr, is64 ? 0x3a : 0x2e);
    const shnum = u16(hdr, is64 ? 0x3c : 0x30);
    const shstrndx = u16(hdr, is64 ? 0x3e : 0x32);
    if (shoff === 0 || shnum === 0 || shstrndx >= shnum) return undefined;
    if (shentsize < (is64 ? 64 : 40)) return undefined;
    const table = await readAt(fh, shoff, shentsize * shnum);
    if (table === undefined) return undefined;
    const section = (i: number): { name: number; offset: number; size: number } => {
      const o = i * shentsize;
      return is64
        ? { name: u32(table, o), offset: word(table, o + 24), size: word(table, o + 32) }
        : { name: u32(table, o), offset: u32(table, o + 16), size: u32(table, o + 20) };
    };
    const strs = section(shstrndx);
    const names = await readAt(fh, strs.offset, strs.size);
    if (names === undefined) return undefined;
    for (let i = 0; i < shnum; i++) {
      const s = section(i);
      const end = names.indexOf(0, s.name);
      if (names.toString("latin1", s.name, end < 0 ? undefined : end) !== ".go.buildinfo") continue;
      return await readAt(fh, s.offset, s.size);
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

function uvarint(b: Buffer, pos: number): [number, number] | undefined {
  let x = 0;
  let shift = 0;
  for (let i = pos; i < b.length && i < pos + 10; i++) {
    const c = b[i]!;
    x += (c & 0x7f) * 2 ** shift;
    if (c < 0x80) return [x, i + 1];
    shift += 7;
  }
  return undefined;
}

export interface GoBuildInfo {
  goVersion: string;
  /** `path`, `mod`, `dep` (with `=>` replacements applied) */
  path?: string;
  main?: { path: string; version: string };
  deps: { path: string; version: string }[];
}

/** Parses the section's inline form (Go 1.18+): header, then the two varint-length strings. */
export function parseBuildInfo(section: Buffer): GoBuildInfo | undefined {
  if (section.length < 32 || !section.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const flags = section[15]!;
  if ((flags & 2) === 0) return undefined;
  const v = uvarint(section, 32);
  if (v === undefined) return undefined;
  const goVersion = section.toString("utf8", v[1], v[1] + v[0]);
  const m = uvarint(section, v[1] + v[0]);
  if (m === undefined) return undefined;
  let mod = section.toString("latin1", m[1], m[1] + m[0]);
  // the module info is framed by 16-byte sentinels
  mod = mod.length >= 33 && mod[mod.length - 17] === "\n" ? mod.slice(16, -16) : "";
  const info: GoBuildInfo = { goVersion, deps: [] };
  let last: { path: string; version: string } | undefined;
  for (const line of Buffer.from(mod, "latin1").toString("utf8").split("\n")) {
    const f = line.split("\t");
    if (f[0] === "path" && f[1]) info.path = f[1];
    else if (f[0] === "mod" && f[1]) info.main = last = { path: f[1], version: f[2] ?? "" };
    else if (f[0] === "dep" && f[1]) {
      last = { path: f[1], version: f[2] ?? "" };
      info.deps.push(last);
    } else if (f[0] === "=>" && f[1] && last !== undefined) {
      last.path = f[1];
      last.version = f[2] ?? "";
    }
  }
  return info;
}

function goPurl(path: string, version: string): string {
  const i = path.lastIndexOf("/");
  return formatPurl({
    type: "golang",
    namespace: i < 0 ? undefined : path.slice(0, i),
    name: i < 0 ? path : path.slice(i + 1),
    version,
  });
}

/** The modules of a Go binary as packages (its main module, dependencies and the stdlib). */
export async function goPackages(path: string, location: string): Promise<FoundPackage[]> {
  const section = await goBuildInfoSection(path);
  const info = section && parseBuildInfo(section);
  if (!info) return [];
  const out: FoundPackage[] = [];
  const add = (p: string, version: string): void => {
    out.push({ ecosystem: "go", name: p, version, purl: goPurl(p, version), location });
  };
  if (info.main) add(info.main.path, info.main.version);
  for (const d of info.deps) add(d.path, d.version);
  if (info.goVersion.startsWith("go")) add("stdlib", info.goVersion.slice(2));
  return out;
}
