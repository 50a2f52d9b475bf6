/**
 * The remote build contexts of one `kiln build` (a git or http(s) main context, and
 * `--build-context name=git://…|https://…` sources): materialized before the build into
 * temporary directories, which then stand in for the URLs; removed when the build ends.
 */
import { join } from "node:path";
import { openRemoteContext, type MaterializedContext } from "../context/remote.js";
import { resolveInRoot } from "../rootpath/index.js";
import { parseBuildArgs } from "./options.js";

interface ContextFlags {
  file?: string;
  buildContext?: string[];
  buildArg?: string[];
}

export interface RemoteContexts<F extends ContextFlags> {
  /** the main context's directory when it was remote */
  contextDir?: string;
  /** the flags with remote named contexts replaced by their directories */
  flags: F;
  dispose(): Promise<void>;
}

/** BuildKit keeps `.git` in a git context only when this build arg is true. */
function keepGitDir(flags: ContextFlags): boolean {
  const v = parseBuildArgs(flags.buildArg ?? [], process.env).BUILDKIT_CONTEXT_KEEP_GIT_DIR;
  return v !== undefined && /^(1|true)$/i.test(v);
}

export async function openRemoteContexts<F extends ContextFlags>(
  context: string,
  flags: F,
): Promise<RemoteContexts<F>> {
  const opened: MaterializedContext[] = [];
  const dispose = async (): Promise<void> => {
    for (const c of opened.splice(0)) await c.dispose();
  };
  try {
    // a git context is checked out here, with the user's ssh agent
    const access = { keepGitDir: keepGitDir(flags), sshAuthSock: process.env.SSH_AUTH_SOCK };
    const out: F = { ...flags };
    let contextDir: string | undefined;
    const main = context === "-" ? undefined : await openRemoteContext(context, access);
    if (main) {
      opened.push(main);
      contextDir = main.dir;
      // -f names a file inside a remote context, as with BuildKit
      if (flags.file !== undefined) {
        out.file = await resolveInRoot(main.dir, join("/", flags.file), { followFinal: true });
      }
    }
    const named: string[] = [];
    for (const v of flags.buildContext ?? []) {
      const eq = v.indexOf("=");
      const target = eq < 0 ? undefined : await openRemoteContext(v.slice(eq + 1), access);
      if (target === undefined) {
        named.push(v);
        continue;
      }
      opened.push(target);
      named.push(`${v.slice(0, eq)}=${target.dir}`);
    }
    if (flags.buildContext !== undefined) out.buildContext = named;
    return { contextDir, flags: out, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}
