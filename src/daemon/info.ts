/** What a node tells clients about itself: the platforms it runs natively and by emulation. */
import { findEmulator, probeSupported } from "../emulation/index.js";
import { format, normalize, only, parse } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

/** Architectures a QEMU wrapper can emulate even without a binfmt_misc handler. */
const WRAPPER_CANDIDATES = [
  "linux/amd64",
  "linux/arm64",
  "linux/arm/v7",
  "linux/arm/v6",
  "linux/ppc64le",
  "linux/s390x",
  "linux/riscv64",
  "linux/386",
].map((p) => normalize(parse(p)));

export interface PlatformOffer {
  native: Platform[];
  emulated: Platform[];
}

/** Probes this host: the CPU's platform is native; binfmt handlers and static QEMUs emulate. */
export async function probeOffer(): Promise<PlatformOffer> {
  const supported = await probeSupported();
  // the CPU's own architecture at any level it passed the probe for, and what it runs besides
  // (386 on amd64), as containerd's Only decides
  const cpu = only(supported.native);
  const isNative = (p: Platform): boolean =>
    p.architecture === supported.native.architecture || cpu.match(p);
  const native = supported.supported.filter(isNative);
  const emulated = supported.supported.filter((p) => !isNative(p));
  const seen = new Set([...native, ...emulated].map(format));
  for (const p of WRAPPER_CANDIDATES) {
    if (seen.has(format(p)) || isNative(p)) continue;
    if ((await findEmulator(p)) !== undefined) {
      emulated.push(p);
      seen.add(format(p));
    }
  }
  return { native, emulated };
}
