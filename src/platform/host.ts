/**
 * The host platform, as containerd's `DefaultSpec()` reports it: Go names for OS and
 * architecture, plus the ARM variant read from /proc/cpuinfo (uname fallback).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import type { Platform } from "./types.js";

const NODE_TO_GO_ARCH: Record<string, string> = {
  x64: "amd64",
  ia32: "386",
  arm: "arm",
  arm64: "arm64",
  mips: "mips",
  mipsel: "mipsle",
  mips64: "mips64",
  mips64el: "mips64le",
  ppc: "ppc",
  riscv64: "riscv64",
  loong64: "loong64",
  s390: "s390",
  s390x: "s390x",
};

/**
 * Maps a Node `process.arch` value to Go's GOARCH name. Node reports both ppc64 flavours as
 * `ppc64`, so the byte order decides (`ppc64le` is the common one).
 */
export function toGoArch(nodeArch: string, endianness: "BE" | "LE" = os.endianness()): string {
  if (nodeArch === "ppc64") return endianness === "LE" ? "ppc64le" : "ppc64";
  return NODE_TO_GO_ARCH[nodeArch] ?? nodeArch;
}

/** Maps a Node `process.platform` value to Go's GOOS name. */
export function toGoOS(nodePlatform: string): string {
  if (nodePlatform === "win32") return "windows";
  if (nodePlatform === "sunos") return "solaris";
  return nodePlatform;
}

/** The trimmed value of the first `key: value` line whose key matches case-insensitively. */
function cpuinfoField(cpuinfo: string, key: string): string | undefined {
  for (const line of cpuinfo.split("\n")) {
    const parts = line.split(":");
    if (parts.length > 1 && parts[0]!.trim().toLowerCase() === key.toLowerCase()) {
      return parts[1]!.trim();
    }
  }
  return undefined;
}

/** `uname -m` (e.g. `aarch64`, `armv7l`) → the bare version digit, or undefined if not ARM. */
function variantFromMachine(machine: string): string | undefined {
  const m = machine.toLowerCase();
  if (m === "aarch64") return "8";
  if (m.startsWith("armv") && m.length >= 5) {
    const digit = m.slice(4, 5);
    return ["3", "4", "5", "6", "7", "8"].includes(digit) ? digit : "unknown";
  }
  return undefined;
}

export interface CpuFacts {
  /** Go architecture of the running process. */
  goarch: string;
  /** Contents of /proc/cpuinfo, if readable. */
  cpuinfo?: string;
  /** `uname -m`, used when cpuinfo has no "CPU architecture" line (e.g. under emulation). */
  machine?: string;
}

/**
 * The ARM variant (`v5`…`v8`, or `unknown`) of the CPU described by `facts`, "" when the
 * architecture is not ARM or nothing could be learned — containerd's `getCPUVariant`.
 */
export function cpuVariantFrom(facts: CpuFacts): string {
  if (facts.goarch !== "arm" && facts.goarch !== "arm64") return "";
  const info = facts.cpuinfo ?? "";
  let variant = cpuinfoField(info, "Cpu architecture");
  if (variant === undefined) {
    variant = facts.machine === undefined ? undefined : variantFromMachine(facts.machine);
    if (variant === undefined) return "";
  }
  // Raspberry Pi ARMv6 boards report "CPU architecture: 7" due to a kernel quirk.
  if (facts.goarch === "arm" && variant === "7") {
    const model = cpuinfoField(info, "model name");
    if (model !== undefined && model.toLowerCase().startsWith("armv6-compatible")) variant = "6";
  }
  switch (variant.toLowerCase()) {
    case "8":
    case "aarch64":
      return "v8";
    case "7":
    case "7m":
    case "?(12)":
    case "?(13)":
    case "?(14)":
    case "?(15)":
    case "?(16)":
    case "?(17)":
      return "v7";
    case "6":
    case "6tej":
      return "v6";
    case "5":
    case "5t":
    case "5te":
    case "5tej":
      return "v5";
    case "4":
    case "4t":
      return "v4";
    case "3":
      return "v3";
    default:
      return "unknown";
  }
}

function readCpuinfo(): string | undefined {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return undefined;
  }
}

let hostSpec: Platform | undefined;

/**
 * The host platform, not normalized (arm64 hosts report `v8`), like containerd's
 * `DefaultSpec()`. Computed once per process.
 */
export function defaultSpec(): Platform {
  if (hostSpec === undefined) {
    const goarch = toGoArch(process.arch);
    const goos = toGoOS(process.platform);
    const variant =
      goarch === "arm" || goarch === "arm64"
        ? cpuVariantFrom({ goarch, cpuinfo: readCpuinfo(), machine: os.machine() })
        : "";
    const spec: Platform = { os: goos, architecture: goarch };
    if (variant !== "") spec.variant = variant;
    // Windows images are matched by OS build, so the host's must be known.
    if (goos === "windows") spec.osVersion = os.release();
    hostSpec = spec;
  }
  return { ...hostSpec };
}
