/**
 * Known operating systems / architectures and the alias tables, following containerd's
 * `platforms` package (database.go), which itself follows Go's `go/build/syslist.go`.
 */

const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "hurd",
  "illumos",
  "ios",
  "js",
  "linux",
  "nacl",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "windows",
  "zos",
]);

const KNOWN_ARCH = new Set([
  "386",
  "amd64",
  "amd64p32",
  "arm",
  "armbe",
  "arm64",
  "arm64be",
  "ppc64",
  "ppc64le",
  "loong64",
  "mips",
  "mipsle",
  "mips64",
  "mips64le",
  "mips64p32",
  "mips64p32le",
  "ppc",
  "riscv",
  "riscv64",
  "s390",
  "s390x",
  "sparc",
  "sparc64",
  "wasm",
]);

/** True for a (normalized) OS name Go knows about. */
export function isKnownOS(os: string): boolean {
  return KNOWN_OS.has(os);
}

/** True for a (normalized) architecture name Go knows about. */
export function isKnownArch(arch: string): boolean {
  return KNOWN_ARCH.has(arch);
}

/** Lower-cases and resolves aliases; an empty OS means the host's. */
export function normalizeOS(os: string, hostOS: () => string): string {
  if (os === "") return hostOS();
  const lower = os.toLowerCase();
  return lower === "macos" ? "darwin" : lower;
}

/**
 * Canonical architecture and variant: `aarch64`→`arm64`, `armhf`→`arm/v7`, `armel`→`arm/v6`,
 * `i386`→`386`, `x86_64`/`x86-64`→`amd64`; the most common variant of amd64 (v1) and arm64 (v8)
 * is dropped while arm's v7 is made explicit — exactly containerd's `normalizeArch`.
 */
export function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case "i386":
      a = "386";
      v = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      a = "amd64";
      if (v === "v1") v = "";
      break;
    case "aarch64":
    case "arm64":
      a = "arm64";
      if (v === "8" || v === "v8" || v === "v8.0") v = "";
      else if (v === "9" || v === "9.0" || v === "v9.0") v = "v9";
      break;
    case "armhf":
      a = "arm";
      v = "v7";
      break;
    case "armel":
      a = "arm";
      v = "v6";
      break;
    case "arm":
      if (v === "" || v === "7") v = "v7";
      else if (v === "5" || v === "6" || v === "8") v = "v" + v;
      break;
  }
  return [a, v];
}
