/**
 * The on-disk tar format: 512-byte ustar headers, PAX extended records and the numeric
 * encodings (octal, GNU base-256). Pure functions over Buffers; the streaming reader and
 * writer are built on these.
 */
import { posix } from "node:path";
import { invalidLayer } from "./errors.js";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarEntry {
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky (0o7777); the file type lives in `type`. */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Body length; only "file" entries carry a body. */
  size: number;
  /** Seconds since the epoch; fractional values travel in a PAX `mtime` record. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes with their exact bytes (binary values such as security.capability). */
  xattrs: Record<string, Buffer>;
}

export const BLOCK = 512;
/** A PAX or GNU long-name header larger than this is treated as hostile. */
export const MAX_META_SIZE = 1024 * 1024;
export const XATTR_PREFIX = "SCHILY.xattr.";

const TYPE_TO_FLAG: Record<TarEntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

/** Typeflags for which the size field describes no body (as in Go's archive/tar). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);

export function blockPadding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function fitsOctal(value: number, width: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < 8 ** (width - 1);
}

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  block.write(value.toString(8).padStart(width - 1, "0"), offset, width - 1, "ascii");
  block[offset + width - 1] = 0;
}

function formatSeconds(t: number): string {
  if (Number.isInteger(t)) return String(t);
  return t.toFixed(9).replace(/0+$/, "");
}

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3; // " " + "=" + "\n"
  const digits = String(rest).length;
  let len = rest + digits;
  if (String(len).length > digits) len += 1; // adding the length itself added a digit
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from("\n")]);
}

/** PAX records in sorted key order, so equal entries always encode to equal bytes. */
export function encodePax(records: Map<string, Buffer>): Buffer {
  const keys = [...records.keys()].sort();
  return Buffer.concat(keys.map((k) => paxRecord(k, records.get(k)!)));
}

interface RawFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

// The encoding follows Go's archive/tar (BuildKit writes layers with it, through containerd's
// diff writer, which asks for the PAX format): an entry is plain ustar when every field fits
// (a long ASCII name split into the prefix field at a slash), otherwise a PAX record header
// followed by a ustar header holding the fields cut down to ASCII. Same entries, same bytes.

const NAME_SIZE = 100;
const PREFIX_SIZE = 155;

/**
 * Go's formatString: the field gets the string's bytes, cut to the field; a cut that ends in
 * "/" is NUL-terminated before that run of slashes (so a file never looks like a directory).
 */
function writeField(block: Buffer, offset: number, width: number, s: string): void {
  const bytes = Buffer.from(s, "utf8");
  bytes.copy(block, offset, 0, Math.min(width, bytes.length));
  if (bytes.length < width) block[offset + bytes.length] = 0;
  if (bytes.length > width && block[offset + width - 1] === 0x2f) {
    let n = width - 1;
    while (n > 0 && bytes[n - 1] === 0x2f) n--;
    block[offset + n] = 0;
  }
}

function isAscii(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s);
}

/** Go's tar toASCII: characters outside ASCII are dropped. */
function toAscii(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x80) out += s.charAt(i);
  return out;
}

/**
 * A name longer than the name field, split at a slash into ustar's prefix (155 bytes) and name
 * (100 bytes) fields; undefined when it cannot be (Go's splitUSTARPath).
 */
export function splitUstarPath(name: string): { prefix: string; name: string } | undefined {
  if (name.length <= NAME_SIZE || !isAscii(name)) return undefined;
  let length = name.length;
  if (length > PREFIX_SIZE + 1) length = PREFIX_SIZE + 1;
  else if (name[length - 1] === "/") length--;
  const i = name.lastIndexOf("/", length - 1);
  const suffixLength = name.length - i - 1;
  if (i <= 0 || suffixLength > NAME_SIZE || suffixLength === 0 || i > PREFIX_SIZE) return undefined;
  return { prefix: name.slice(0, i), name: name.slice(i + 1) };
}

/** A ustar block; `devices: false` leaves the device fields empty, as Go's PAX record headers. */
function encodeUstar(f: RawFields, prefix = "", devices = true): Buffer {
  const b = Buffer.alloc(BLOCK);
  writeField(b, 0, NAME_SIZE, f.name);
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, f.uid);
  writeOctal(b, 116, 8, f.gid);
  writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, f.mtime);
  b.write(f.typeflag, 156, 1, "ascii");
  writeField(b, 157, 100, f.linkname);
  b.write("ustar\x0000", 257, 8, "ascii");
  writeField(b, 265, 32, f.uname);
  writeField(b, 297, 32, f.gname);
  if (devices) {
    writeOctal(b, 329, 8, f.devmajor);
    writeOctal(b, 337, 8, f.devminor);
  }
  writeField(b, 345, PREFIX_SIZE, prefix);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
  return b;
}

/**
 * The header blocks for one entry: plain ustar when it can hold the entry exactly, else a PAX
 * `x` header with the records followed by a ustar header with what fits.
 */
export function encodeHeader(entry: TarEntry): Buffer {
  const pax = new Map<string, Buffer>();
  let ustar = true;
  let prefix = "";
  const size = entry.type === "file" ? entry.size : 0;
  const fields: RawFields = {
    name: entry.name,
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    size,
    mtime: entry.mtime,
    typeflag: TYPE_TO_FLAG[entry.type],
    linkname: entry.linkname ?? "",
    uname: entry.uname ?? "",
    gname: entry.gname ?? "",
    devmajor: entry.devmajor ?? 0,
    devminor: entry.devminor ?? 0,
  };
  const strings = [
    ["name", "path", NAME_SIZE],
    ["linkname", "linkpath", 100],
    ["uname", "uname", 32],
    ["gname", "gname", 32],
  ] as const;
  for (const [k, key, width] of strings) {
    const v = fields[k];
    if (isAscii(v) && Buffer.byteLength(v) <= width) continue;
    pax.set(key, Buffer.from(v));
    const split = k === "name" ? splitUstarPath(v) : undefined;
    if (split) prefix = split.prefix;
    else ustar = false;
  }
  for (const k of ["uid", "gid"] as const) {
    if (!fitsOctal(fields[k], 8)) {
      pax.set(k, Buffer.from(String(fields[k])));
      fields[k] = 0;
      ustar = false;
    }
  }
  if (!fitsOctal(size, 12)) {
    pax.set("size", Buffer.from(String(size)));
    fields.size = 0;
    ustar = false;
  }
  if (!fitsOctal(entry.mtime, 12)) {
    // sub-second or out of range: Go then prefers PAX even when all else fits
    pax.set("mtime", Buffer.from(formatSeconds(entry.mtime)));
    const whole = Math.floor(entry.mtime);
    fields.mtime = fitsOctal(whole, 12) ? whole : 0;
    ustar = false;
  }
  for (const k of ["devmajor", "devminor"] as const) {
    if (!fitsOctal(fields[k], 8)) {
      pax.set(`SCHILY.${k}`, Buffer.from(String(fields[k])));
      fields[k] = 0;
      ustar = false;
    }
  }
  for (const [name, value] of Object.entries(entry.xattrs)) {
    pax.set(XATTR_PREFIX + name, value);
    ustar = false;
  }

  if (ustar) {
    if (prefix !== "") fields.name = fields.name.slice(prefix.length + 1);
    return encodeUstar(fields, prefix);
  }
  for (const k of ["name", "linkname", "uname", "gname"] as const) fields[k] = toAscii(fields[k]);
  const header = encodeUstar(fields);
  const body = encodePax(pax);
  // the record header is named dir/PaxHeaders.0/file (path.Split, then path.Join: a directory
  // "a/b/" gives "a/b/PaxHeaders.0"), in ASCII, cut to 100 bytes, with zero mode and time
  const slash = entry.name.lastIndexOf("/");
  const paxName = posix.join(
    entry.name.slice(0, slash + 1),
    "PaxHeaders.0",
    entry.name.slice(slash + 1),
  );
  const paxHeader = encodeUstar(
    {
      name: toAscii(paxName).slice(0, NAME_SIZE).replace(/\/+$/, ""),
      mode: 0,
      uid: 0,
      gid: 0,
      size: body.length,
      mtime: 0,
      typeflag: "x",
      linkname: "",
      uname: "",
      gname: "",
      devmajor: 0,
      devminor: 0,
    },
    "",
    false,
  );
  return Buffer.concat([paxHeader, body, Buffer.alloc(blockPadding(body.length)), header]);
}

// ---------------------------------------------------------------------------------------------
// Decoding

function cstring(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString("utf8", 0, end === -1 ? b.length : end);
}

/** Octal (NUL/space padded) or GNU base-256 (high bit set) numeric field. */
export function parseNumeric(b: Buffer, field: string): number {
  const first = b[0]!;
  if (first & 0x80) {
    const negative = first === 0xff;
    let v = BigInt(negative ? 0xff : first & 0x7f);
    for (let i = 1; i < b.length; i++) v = (v << 8n) | BigInt(b[i]!);
    if (negative) v -= 1n << BigInt(8 * b.length);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw invalidLayer(`tar header field ${field} is out of range`);
    }
    return Number(v);
  }
  const s = b
    .toString("latin1")
    .replace(/^[ \0]+/, "")
    .replace(/[ \0].*$/s, "");
  if (!/^[0-7]*$/.test(s)) throw invalidLayer(`tar header field ${field} is not a number`);
  if (s === "") return 0;
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw invalidLayer(`tar header field ${field} is out of range`);
  return v;
}

export interface RawHeader extends RawFields {
  /** True when typeflag has no body regardless of the size field. */
  headerOnly: boolean;
}

export function isZeroBlock(b: Buffer): boolean {
  for (const byte of b) if (byte !== 0) return false;
  return true;
}

export function decodeHeader(b: Buffer): RawHeader {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  const stored = parseNumeric(b.subarray(148, 156), "chksum");
  if (stored !== unsigned && stored !== signed) throw invalidLayer("tar header checksum mismatch");

  const magic = b.toString("latin1", 257, 263);
  let name = cstring(b.subarray(0, 100));
  // Only POSIX ustar has a prefix field; GNU tar stores atime/ctime at the same offset.
  if (magic === "ustar\0") {
    const prefix = cstring(b.subarray(345, 500));
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const typeflag = b[156] === 0 ? "0" : String.fromCharCode(b[156]!);
  const size = parseNumeric(b.subarray(124, 136), "size");
  if (size < 0) throw invalidLayer(`tar entry ${JSON.stringify(name)} has a negative size`);
  const hasDev = magic.startsWith("ustar");
  return {
    name,
    mode: parseNumeric(b.subarray(100, 108), "mode") & 0o7777,
    uid: parseNumeric(b.subarray(108, 116), "uid"),
    gid: parseNumeric(b.subarray(116, 124), "gid"),
    size,
    mtime: parseNumeric(b.subarray(136, 148), "mtime"),
    typeflag,
    linkname: cstring(b.subarray(157, 257)),
    uname: hasDev ? cstring(b.subarray(265, 297)) : "",
    gname: hasDev ? cstring(b.subarray(297, 329)) : "",
    devmajor: hasDev ? parseNumeric(b.subarray(329, 337), "devmajor") : 0,
    devminor: hasDev ? parseNumeric(b.subarray(337, 345), "devminor") : 0,
    headerOnly: HEADER_ONLY.has(typeflag),
  };
}

/** Parse PAX records ("<len> <key>=<value>\n"); values stay raw bytes. */
export function parsePax(b: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < b.length) {
    if (b[pos] === 0) break; // NUL padding after the last record
    const space = b.indexOf(0x20, pos);
    if (space === -1 || space - pos > 20) throw invalidLayer("malformed PAX record length");
    const lenText = b.toString("latin1", pos, space);
    if (!/^[1-9][0-9]*$/.test(lenText)) throw invalidLayer("malformed PAX record length");
    const len = Number(lenText);
    const end = pos + len;
    if (end > b.length || end <= space + 1 || b[end - 1] !== 0x0a) {
      throw invalidLayer("malformed PAX record");
    }
    const eq = b.indexOf(0x3d, space + 1);
    if (eq === -1 || eq >= end) throw invalidLayer("PAX record without '='");
    out.set(b.toString("utf8", space + 1, eq), b.subarray(eq + 1, end - 1));
    pos = end;
  }
  return out;
}

function paxInteger(v: Buffer, key: string): number {
  const s = v.toString("latin1");
  if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(Number(s))) {
    throw invalidLayer(`PAX ${key} is not a valid number`);
  }
  return Number(s);
}

const FLAG_TO_TYPE: Record<string, TarEntryType> = {
  "0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

/** Combine a ustar header with its PAX records and GNU long names into one entry. */
export function buildEntry(
  h: RawHeader,
  pax: Map<string, Buffer>,
  longName: string | undefined,
  longLink: string | undefined,
): TarEntry {
  let type = FLAG_TO_TYPE[h.typeflag];
  // Pre-POSIX archives mark directories only by a trailing slash.
  if (type === "file" && h.typeflag === "0" && h.name.endsWith("/")) type = "dir";
  if (type === undefined) {
    throw invalidLayer(`unsupported tar entry type ${JSON.stringify(h.typeflag)} for ${h.name}`);
  }
  const entry: TarEntry = {
    name: longName ?? h.name,
    type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: h.headerOnly ? 0 : h.size,
    mtime: h.mtime,
    xattrs: {},
  };
  if (h.uname !== "") entry.uname = h.uname;
  if (h.gname !== "") entry.gname = h.gname;
  const link = longLink ?? h.linkname;
  if (type === "symlink" || type === "hardlink") entry.linkname = link;
  if (type === "char" || type === "block") {
    entry.devmajor = h.devmajor;
    entry.devminor = h.devminor;
  }
  for (const [key, value] of pax) {
    if (key.startsWith(XATTR_PREFIX)) {
      entry.xattrs[key.slice(XATTR_PREFIX.length)] = Buffer.from(value);
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      const name = decodeURIComponent(key.slice("LIBARCHIVE.xattr.".length));
      entry.xattrs[name] ??= Buffer.from(value.toString("latin1"), "base64");
    } else if (key.startsWith("GNU.sparse.")) {
      throw invalidLayer(`sparse tar entries are not supported (${entry.name})`);
    } else if (value.length === 0) {
      continue; // an empty value means "use the header field"
    } else if (key === "path") entry.name = value.toString("utf8");
    else if (key === "linkpath") {
      if (type === "symlink" || type === "hardlink") entry.linkname = value.toString("utf8");
    } else if (key === "size") {
      if (!h.headerOnly) entry.size = paxInteger(value, key);
    } else if (key === "uid") entry.uid = paxInteger(value, key);
    else if (key === "gid") entry.gid = paxInteger(value, key);
    else if (key === "uname") entry.uname = value.toString("utf8");
    else if (key === "gname") entry.gname = value.toString("utf8");
    else if (key === "mtime") {
      const s = value.toString("latin1");
      if (!/^-?[0-9]+(\.[0-9]+)?$/.test(s)) throw invalidLayer("PAX mtime is not a number");
      entry.mtime = Number(s);
    } else if (key === "SCHILY.devmajor") entry.devmajor = paxInteger(value, key);
    else if (key === "SCHILY.devminor") entry.devminor = paxInteger(value, key);
  }
  return entry;
}
