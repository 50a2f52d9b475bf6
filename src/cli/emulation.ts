/** `kiln platforms` and `kiln binfmt`: what this host can run, and the kernel's QEMU handlers. */
import { Command } from "commander";
import {
  binfmtStatus,
  findEmulator,
  installBinfmt,
  probeSupported,
  uninstallBinfmt,
  PROBE_ARCHITECTURES,
} from "../emulation/index.js";
import { format, formatAll, only } from "../platform/index.js";

function arches(v: string): string[] | "all" {
  return v === "all"
    ? "all"
    : v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
}

export function platformsCommand(): Command {
  return new Command("platforms")
    .description(
      "Show the platforms this host can build for: native, via binfmt, via a QEMU wrapper",
    )
    .option("--json", "print JSON")
    .option("--ignore-binfmt", "as kiln would see it with --ignore-binfmt")
    .action(async (flags: { json?: boolean; ignoreBinfmt?: boolean }) => {
      const s = await probeSupported({
        ignoreBinfmt: flags.ignoreBinfmt ?? false,
        cacheMaxAgeMs: 0,
      });
      const covered = (arch: string): boolean =>
        s.supported.some((p) => only(p).match({ os: "linux", architecture: arch }));
      const wrapped: { platform: string; emulator: string; version?: string }[] = [];
      for (const arch of PROBE_ARCHITECTURES) {
        if (covered(arch)) continue;
        const e = await findEmulator({ os: "linux", architecture: arch });
        if (e) wrapped.push({ platform: `linux/${arch}`, emulator: e.path, version: e.version });
      }
      const native = formatAll(s.native);
      const binfmt = s.supported.filter((p) => formatAll(p) !== native).map(format);
      if (flags.json) {
        process.stdout.write(
          JSON.stringify({ native, binfmt, wrapper: wrapped, failures: s.failures }, null, 2) +
            "\n",
        );
        return;
      }
      process.stdout.write(`native:  ${native}\n`);
      process.stdout.write(`binfmt:  ${binfmt.length ? binfmt.join(", ") : "(none)"}\n`);
      process.stdout.write("wrapper:");
      if (wrapped.length === 0) process.stdout.write(" (none: apt-get install qemu-user-static)\n");
      else
        process.stdout.write(
          "\n" +
            wrapped
              .map(
                (w) =>
                  `  ${w.platform.padEnd(16)} ${w.emulator}${w.version ? ` (QEMU ${w.version})` : ""}`,
              )
              .join("\n") +
            "\n",
        );
    });
}

export function binfmtCommand(): Command {
  return new Command("binfmt")
    .description("Show, install or remove QEMU binfmt_misc handlers (like tonistiigi/binfmt)")
    .option("--install <arches>", "register handlers: all, or a list like arm64,riscv64")
    .option("--uninstall <arches>", "remove handlers: all, or a list")
    .option("--preserve-argv0", "register with the P flag")
    .option("--mount <dir>", "binfmt_misc mount point", "/proc/sys/fs/binfmt_misc")
    .action(
      async (flags: {
        install?: string;
        uninstall?: string;
        preserveArgv0?: boolean;
        mount: string;
      }) => {
        if (flags.install) {
          const changes = await installBinfmt(arches(flags.install), {
            mountPoint: flags.mount,
            flags: flags.preserveArgv0 ? "CFP" : "CF",
          });
          for (const c of changes) process.stderr.write(`${JSON.stringify(c)}\n`);
        }
        if (flags.uninstall) {
          const changes = await uninstallBinfmt(arches(flags.uninstall), {
            mountPoint: flags.mount,
          });
          for (const c of changes) process.stderr.write(`${JSON.stringify(c)}\n`);
        }
        process.stdout.write(JSON.stringify(await binfmtStatus(flags.mount), null, 2) + "\n");
      },
    );
}
