import { open, stat } from "node:fs/promises";
import { posix } from "node:path";
import { KilnError } from "../errors.js";
import { resolveInRoot } from "./rootpath.js";
import { DEFAULT_PATH, EMULATOR_PATH } from "./spec.js";

/**
 * Emulated RUN without binfmt_misc: the container starts the host's QEMU user-mode binary,
 * bind-mounted at EMULATOR_PATH, as `qemu -0 <argv0> <program path> <args...>`. Stock QEMU
 * (7.2 here) neither searches PATH nor runs `#!` scripts, so both are done here, inside the
 * rootfs. Programs the emulated process execs itself go through the kernel as usual.
 */

async function isExecutableFile(rootfs: string, path: string): Promise<boolean> {
  try {
    const st = await stat(await resolveInRoot(rootfs, path));
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Find argv0 like execvp inside the container: names with a slash are used as given. */
export async function lookPathInRoot(
  rootfs: string,
  argv0: string,
  env: readonly string[],
  cwd: string,
): Promise<string> {
  if (argv0.includes("/")) return argv0;
  const pathVar = env.findLast((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  for (const dir of pathVar.split(":")) {
    if (dir === "") continue;
    const candidate = posix.join(posix.resolve(cwd, dir), argv0);
    if (await isExecutableFile(rootfs, candidate)) return candidate;
  }
  throw new KilnError("E_EXEC_NOT_FOUND", `"${argv0}": executable file not found in $PATH`, {
    hint: "Install the program in an earlier step or use its absolute path.",
  });
}

/** `#!interp [arg]` of a script, or undefined for anything else (e.g. an ELF binary). */
export function parseShebang(head: Buffer): { interpreter: string; arg?: string } | undefined {
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const nl = head.indexOf(0x0a);
  const line = head
    .subarray(2, nl === -1 ? head.length : nl)
    .toString("utf8")
    .trim();
  const m = /^(\S+)(?:\s+(.*))?$/.exec(line);
  if (!m) return undefined;
  return m[2] ? { interpreter: m[1]!, arg: m[2] } : { interpreter: m[1]! };
}

async function readHead(rootfs: string, path: string, cwd: string): Promise<Buffer> {
  const fh = await open(await resolveInRoot(rootfs, posix.resolve(cwd, path)), "r");
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The argv that runs `args` under the emulator (one level of `#!` handled like the kernel). */
export async function emulatedArgs(
  rootfs: string,
  args: readonly string[],
  env: readonly string[],
  cwd: string,
): Promise<string[]> {
  const [argv0, ...rest] = args;
  if (argv0 === undefined) {
    throw new KilnError("E_EXEC_ARGS", "cannot run an empty command");
  }
  const program = await lookPathInRoot(rootfs, argv0, env, cwd);
  const shebang = parseShebang(await readHead(rootfs, program, cwd).catch(() => Buffer.alloc(0)));
  if (shebang) {
    const extra = shebang.arg === undefined ? [] : [shebang.arg];
    return [
      EMULATOR_PATH,
      "-0",
      shebang.interpreter,
      shebang.interpreter,
      ...extra,
      program,
      ...rest,
    ];
  }
  return [EMULATOR_PATH, "-0", argv0, program, ...rest];
}
