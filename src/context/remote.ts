/**
 * Build contexts that are not local directories, with BuildKit's syntax: a git repository
 * (`git://…`, `https://….git`, `git@host:repo`, `#ref:subdir`), or an `http(s)://` URL of a
 * tar archive (optionally compressed) or of a lone Dockerfile. Each is materialized into a
 * private temporary directory — archives with the same safe extraction as ADD — and then is a
 * local context like any other.
 */
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import { KilnError, messageOf } from "../errors.js";
import { extractArchive, isArchive } from "../fileops/index.js";
import { HttpTransport } from "../registry/http.js";
import { checkoutGit, parseGitRef, type GitAccess } from "../source/index.js";

export interface MaterializedContext {
  dir: string;
  dispose(): Promise<void>;
}

export interface RemoteContextOptions extends GitAccess {
  /** keep `.git` in a git context (BUILDKIT_CONTEXT_KEEP_GIT_DIR) */
  keepGitDir?: boolean;
}

/** Whether `spec` names a remote context (git or http) rather than a local directory. */
export function isRemoteContext(spec: string): boolean {
  return /^https?:\/\//i.test(spec) || parseGitRef(spec) !== undefined;
}

/**
 * A file received as a context (standard input, a download) unpacked into `dir`: an archive is
 * extracted; anything else is the Dockerfile of an otherwise empty context.
 */
export async function unpackContextFile(file: string, dir: string, name: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (await isArchive(file)) await extractArchive(file, dir, { name });
  else await rename(file, join(dir, "Dockerfile"));
}

/** Materializes a remote context; undefined when `spec` is a local path. */
export async function openRemoteContext(
  spec: string,
  opts: RemoteContextOptions = {},
): Promise<MaterializedContext | undefined> {
  const gitRef = parseGitRef(spec);
  const http = gitRef === undefined && /^https?:\/\//i.test(spec);
  if (gitRef === undefined && !http) return undefined;
  const work = await mkdtemp(join(tmpdir(), "kiln-remote-context-"));
  const dispose = (): Promise<void> => rm(work, { recursive: true, force: true });
  try {
    if (gitRef !== undefined) {
      const { dir } = await checkoutGit(gitRef, join(work, "repo"), opts);
      return { dir, dispose };
    }
    const file = join(work, "download");
    await download(spec, file, opts.signal);
    const dir = join(work, "context");
    await unpackContextFile(file, dir, spec);
    return { dir, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

async function download(url: string, file: string, signal?: AbortSignal): Promise<void> {
  const transport = new HttpTransport();
  try {
    let res: IncomingMessage;
    try {
      res = await transport.follow({ method: "GET", url: new URL(url), signal }, true);
    } catch (e) {
      throw new KilnError("E_CONTEXT", `cannot download the context ${url}: ${messageOf(e)}`, {
        hint: "check the URL and that the server is reachable",
        cause: e,
      });
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      res.destroy();
      throw new KilnError("E_CONTEXT", `cannot download the context ${url}: HTTP ${status}`, {
        hint: "the URL must serve a tar archive (or a Dockerfile) with status 200",
      });
    }
    await pipeline(res, createWriteStream(file, { flags: "wx", mode: 0o600 }));
  } finally {
    transport.close();
  }
}
