/** What a node tells clients about itself: the platforms it runs natively and by emulation. */
import { findEmulator, probeSupported } from "../emulation/index.js";
import { format, normalize, onlyStrict, parse } from "../platform/index.js";
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
  const nativeMatch = onlyStrict(supported.native);
  const native = supported.supported.filter((p) => nativeMatch.match(p));
  const emulated = supported.supported.filter((p) => !nativeMatch.match(p));
  const seen = new Set([...native, ...emulated].map(format));
  for (const p of WRAPPER_CANDIDATES) {
    if (seen.has(format(p)) || nativeMatch.match(p)) continue;
    if ((await findEmulator(p)) !== undefined) {
      emulated.push(p);
      seen.add(format(p));
    }
  }
  return { native, emulated };
}
