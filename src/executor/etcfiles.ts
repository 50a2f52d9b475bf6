import { readFileSync } from "node:fs";

export const DEFAULT_HOSTNAME = "buildkitsandbox";

/** /etc/hosts for a container: loopback names, the hostname, then extra hosts in order. */
export function hostsFile(
  hostname: string,
  extraHosts: readonly { host: string; ip: string }[],
): string {
  let text = `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  for (const h of extraHosts) text += `${h.ip}\t${h.host}\n`;
  return text;
}

const FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"];

function isLoopback(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1";
}

/**
 * /etc/resolv.conf for a container, from the host's. Without host networking, loopback
 * nameservers cannot be reached from the container, so they are dropped (like Docker and
 * BuildKit), falling back to public resolvers when none remain.
 */
export function containerResolvConf(hostText: string, network: "none" | "host"): string {
  if (network === "host") return hostText;
  const kept = hostText.split("\n").filter((l) => {
    const m = /^\s*nameserver\s+(\S+)/.exec(l);
    return !m || !isLoopback(m[1]!);
  });
  while (kept.length > 0 && kept.at(-1)!.trim() === "") kept.pop();
  if (!kept.some((l) => /^\s*nameserver\s/.test(l))) {
    kept.push(...FALLBACK_NAMESERVERS.map((ns) => `nameserver ${ns}`));
  }
  return `${kept.join("\n")}\n`;
}

/**
 * The host's resolver config. With systemd-resolved's stub (127.0.0.53) as the only
 * nameserver, the upstream list systemd-resolved maintains is the useful one.
 */
export function hostResolvConf(): string {
  const read = (p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return undefined;
    }
  };
  const main = read("/etc/resolv.conf") ?? "";
  const servers = [...main.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]);
  if (servers.length === 1 && servers[0] === "127.0.0.53") {
    return read("/run/systemd/resolve/resolv.conf") ?? main;
  }
  return main;
}
