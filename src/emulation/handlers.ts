/**
 * Reading the kernel's binfmt_misc entries: which handlers exist, their flags, and which
 * architecture each one serves (found by testing the handler's magic/mask against our probes).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { PROBE_ARCHITECTURES, probeBinary } from "./probes.js";

export const DEFAULT_BINFMT_MOUNT = "/proc/sys/fs/binfmt_misc";

export interface BinfmtHandler {
  /** Entry name, e.g. `qemu-aarch64`. */
  name: string;
  enabled: boolean;
  interpreter?: string;
  /** Kernel flags as listed (`F` fix-binary, `P` preserve-argv0, `C` credentials, `O` open). */
  flags: string;
  offset?: number;
  magic?: Uint8Array;
  mask?: Uint8Array;
  extension?: string;
  /** Go architecture whose executables this handler runs, if it is one kiln probes. */
  architecture?: string;
}

/** Parses the text of `/proc/sys/fs/binfmt_misc/<name>`. */
export function parseBinfmtEntry(name: string, text: string): BinfmtHandler {
  const handler: BinfmtHandler = { name, enabled: false, flags: "" };
  for (const line of text.split("\n")) {
    const sp = line.indexOf(" ");
    const key = sp < 0 ? line : line.slice(0, sp);
    const value = sp < 0 ? "" : line.slice(sp + 1).trim();
    if (key === "enabled") handler.enabled = true;
    else if (key === "interpreter") handler.interpreter = value;
    else if (key === "flags:") handler.flags = value;
    else if (key === "offset") handler.offset = Number(value);
    else if (key === "magic") handler.magic = Buffer.from(value, "hex");
    else if (key === "mask") handler.mask = Buffer.from(value, "hex");
    else if (key === "extension") handler.extension = value;
  }
  const architecture = handledArchitecture(handler);
  if (architecture !== undefined) handler.architecture = architecture;
  return handler;
}

/** Whether a file starting with `head` is claimed by a magic/mask rule at `offset`. */
export function magicMatches(
  head: Uint8Array,
  offset: number,
  magic: Uint8Array,
  mask: Uint8Array | undefined,
): boolean {
  if (head.length < offset + magic.length) return false;
  for (let i = 0; i < magic.length; i++) {
    const m = mask?.[i] ?? 0xff;
    if ((head[offset + i]! & m) !== (magic[i]! & m)) return false;
  }
  return true;
}

function handledArchitecture(h: BinfmtHandler): string | undefined {
  if (h.magic === undefined) return undefined;
  return PROBE_ARCHITECTURES.find((arch) =>
    magicMatches(probeBinary(arch)!, h.offset ?? 0, h.magic!, h.mask),
  );
}

/**
 * Every entry under a binfmt_misc mount; empty when it is not mounted or not readable. Read
 * synchronously: each entry is a few bytes of kernel memory, and a thread-pool round trip per
 * entry (dozens with qemu-user-static) cost more than the reads.
 */
export function readBinfmtHandlers(mountPoint: string = DEFAULT_BINFMT_MOUNT): BinfmtHandler[] {
  let names: string[];
  try {
    names = readdirSync(mountPoint).filter((n) => n !== "register" && n !== "status");
  } catch {
    return [];
  }
  const handlers: BinfmtHandler[] = [];
  for (const name of names.sort()) {
    try {
      handlers.push(parseBinfmtEntry(name, readFileSync(path.join(mountPoint, name), "utf8")));
    } catch {
      // removed while we were reading
    }
  }
  return handlers;
}
