/**
 * Windows container/host OS version compatibility (containerd platform_windows_compat.go):
 * major.minor must match; hosts older than Windows Server 2022 need the exact build; newer
 * hosts also run containers from the previous LTSC build up to their own.
 */

interface WindowsVersion {
  major: number;
  minor: number;
  build: number;
}

const LTSC2022 = 20348;
/** Stable-ABI LTSC releases, ascending: ltsc2022, ltsc2025. */
const COMPAT_LTSC_RELEASES = [LTSC2022, 26100];

const ZERO: WindowsVersion = { major: 0, minor: 0, build: 0 };

/** Go's strconv.ParseUint(s, 10, bits): plain decimal digits within range, else undefined. */
function parseUint(s: string, max: number): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

/** `major.minor.build[.rev]` → numbers; anything unparseable is the zero version. */
function parseWindowsVersion(v: string): WindowsVersion {
  const fields = v.split(".");
  if (fields.length < 3) return ZERO;
  const major = parseUint(fields[0]!, 0xff);
  const minor = parseUint(fields[1]!, 0xff);
  const build = parseUint(fields[2]!, 0xffff);
  if (major === undefined || minor === undefined || build === undefined) return ZERO;
  return { major, minor, build };
}

function hostCanRun(host: WindowsVersion, ctr: WindowsVersion): boolean {
  if (host.major !== ctr.major || host.minor !== ctr.minor) return false;
  if (host.build < LTSC2022) return host.build === ctr.build;
  // The earliest runnable container build is the newest LTSC strictly older than the host
  // (ltsc2022 itself when the host is exactly ltsc2022).
  let oldest = LTSC2022;
  for (let i = COMPAT_LTSC_RELEASES.length - 1; i >= 0; i--) {
    if (host.build > COMPAT_LTSC_RELEASES[i]!) {
      oldest = COMPAT_LTSC_RELEASES[i]!;
      break;
    }
  }
  return oldest <= ctr.build && ctr.build <= host.build;
}

/**
 * A predicate on candidate OS versions for a matcher whose platform has `hostVersion`. An
 * empty (or unparseable) matcher version, or an empty candidate version, matches anything.
 */
export function windowsVersionMatcher(hostVersion: string): (candidate: string) => boolean {
  const host = parseWindowsVersion(hostVersion);
  const empty = host.major === 0 && host.minor === 0 && host.build === 0;
  return (candidate) =>
    empty || candidate === "" || hostCanRun(host, parseWindowsVersion(candidate));
}
