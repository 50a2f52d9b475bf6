/** `kilnd`: serve the build engine to kiln clients (see docs/multi-node.md). */
import { hostname } from "node:os";
import { Command } from "commander";
import { isKilnError, messageOf } from "../errors.js";
import { defaultRoot } from "../engine/state.js";
import { parseEntitlements } from "../entitlements/index.js";
import { parsePlatformList } from "../platform/index.js";
import { VERSION } from "../version.js";
import { KilnDaemon, parseAddress } from "./server.js";

interface Flags {
  addr: string[];
  name?: string;
  root?: string;
  platform: string[];
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  insecure?: boolean;
  allowInsecureEntitlement: string[];
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function program(): Command {
  return new Command("kilnd")
    .description("Serve kiln's build engine on a unix socket or TCP (mutual TLS)")
    .version(VERSION, "-v, --version")
    .option("--addr <address>", "unix:///path.sock or tcp://HOST:PORT (repeatable)", collect, [])
    .option("--name <name>", "node name shown in progress (default: host name)")
    .option("--root <dir>", "state directory: cache, images (default: $KILN_ROOT or /var/lib/kiln)")
    .option(
      "--platform <list>",
      "platforms this node builds natively, e.g. linux/arm64 (repeatable)",
      collect,
      [],
    )
    .option("--tlscacert <file>", "CA that signs the certificates of allowed clients")
    .option("--tlscert <file>", "this node's certificate")
    .option("--tlskey <file>", "this node's private key")
    .option("--insecure", "serve TCP without TLS: anyone who reaches the port can build and read")
    .option(
      "--allow-insecure-entitlement <name>",
      "let clients ask for network.host or security.insecure with kiln build --allow (repeatable)",
      collect,
      [],
    )
    .action(async (flags: Flags) => {
      await serve(flags);
    });
}

async function serve(flags: Flags): Promise<void> {
  const log = (line: string): void => {
    process.stderr.write(`kilnd: ${line}\n`);
  };
  const addrs = (flags.addr.length ? flags.addr : ["unix:///run/kilnd.sock"]).map(parseAddress);
  const tlsGiven = [flags.tlscacert, flags.tlscert, flags.tlskey];
  const tls = tlsGiven.every((f) => f !== undefined)
    ? { ca: flags.tlscacert!, cert: flags.tlscert!, key: flags.tlskey! }
    : undefined;
  if (tls === undefined && tlsGiven.some((f) => f !== undefined)) {
    log("error: --tlscacert, --tlscert and --tlskey go together");
    process.exitCode = 2;
    return;
  }
  if (flags.insecure && addrs.some((a) => a.kind === "tcp") && tls === undefined) {
    log("WARNING: --insecure: serving builds over plain TCP without authentication.");
    log("WARNING: anyone who can reach the port can run builds and push as this node.");
  }
  const daemon = new KilnDaemon({
    name: flags.name ?? hostname(),
    root: flags.root ?? defaultRoot(),
    platforms: parsePlatformList(flags.platform),
    entitlements: parseEntitlements(flags.allowInsecureEntitlement, "--allow-insecure-entitlement"),
    log,
  });
  // probe before listening, so the first client's /info is answered at once
  const info = await daemon.info();
  log(`native ${info.native.join(", ")}; emulated ${info.emulated.join(", ") || "-"}`);
  for (const a of addrs) await daemon.listen(a, { tls, insecure: flags.insecure });
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      log("shutting down");
      daemon.close().then(resolve, resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

// not a top-level await: the bundle that runs this is a CommonJS script (scripts/bundle.js)
program()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    process.stderr.write(`kilnd: error: ${messageOf(e)}\n`);
    if (isKilnError(e) && e.hint !== undefined) process.stderr.write(`kilnd: hint: ${e.hint}\n`);
    process.exitCode = 1;
  });
