/**
 * `ADD <git URL>` with BuildKit's semantics: the ref is resolved to a commit once per build
 * (while cache keys are computed, so a new commit on a branch re-runs the ADD and what follows,
 * and the same commit stays cached), and the tree of exactly that commit is written into the
 * step's layer — the subdir's contents at its root, `.git` only with keep-git-dir and no subdir.
 */
import { randomBytes } from "node:crypto";
import { chmod, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { GitSourceOp } from "../graph/index.js";
import {
  checkoutGit,
  gitAuthHeader,
  redactUrl,
  resolveGitRef,
  type GitAccess,
  type GitRef,
  type ResolvedGitRef,
} from "./git.js";

/** The GitRef an op stands for. */
function gitRefOf(op: GitSourceOp): GitRef {
  return {
    remote: op.remote,
    ref: op.ref,
    subdir: op.subdir ?? "",
    ...(op.checksum !== undefined ? { checksum: op.checksum } : {}),
    ...(op.keepGitDir ? { keepGitDir: true } : {}),
    ...(op.skipSubmodules ? { submodules: false } : {}),
    ...(op.fetchByCommit ? { fetchByCommit: true } : {}),
  };
}

/** What a resolution depends on: ops that differ only in subdir or .git share one. */
function resolutionKey(op: GitSourceOp): string {
  return JSON.stringify([op.remote, op.ref, op.checksum, op.fetchByCommit]);
}

export class GitSource {
  /** one resolution per remote, ref and checksum per build, shared by every ADD of it */
  private readonly resolving = new Map<string, Promise<ResolvedGitRef>>();

  /**
   * `sshAuthSock`: the build's `--ssh default` agent, the only one ssh remotes may use;
   * `secrets`: the build's secrets, for the GIT_AUTH_* ones
   */
  constructor(private readonly o: { sshAuthSock?: string; secrets: ReadonlyMap<string, Buffer> }) {}

  private access(op: GitSourceOp, signal: AbortSignal): GitAccess {
    const authHeader = gitAuthHeader(op.remote, this.o.secrets);
    return {
      signal,
      ...(this.o.sshAuthSock !== undefined ? { sshAuthSock: this.o.sshAuthSock } : {}),
      ...(authHeader !== undefined ? { authHeader } : {}),
    };
  }

  /**
   * The content identity of a git source for the build cache: the commit, and with a kept
   * .git the ref and tag object too (they are in .git).
   */
  async cacheKey(op: GitSourceOp, signal: AbortSignal): Promise<string> {
    const r = await this.resolve(op, signal);
    if (!op.keepGitDir) return r.commit;
    return [r.commit, r.fullRef ?? "", r.tagObject ?? ""].join(" ");
  }

  /**
   * The provenance material of an op this build resolved (BuildKit's: the remote with the ref
   * as written, without password, and the commit or annotated tag object); undefined when it
   * was not resolved.
   */
  async material(op: GitSourceOp): Promise<{ url: string; commit: string } | undefined> {
    const resolving = this.resolving.get(resolutionKey(op));
    if (resolving === undefined) return undefined;
    const r = await resolving;
    // BuildKit pins an annotated tag by its own object
    return {
      url: redactUrl(op.ref ? `${op.remote}#${op.ref}` : op.remote),
      commit: r.tagObject ?? r.commit,
    };
  }

  /**
   * Writes the source's tree into `dir` (an empty directory on the filesystem of the
   * checkout): the checkout is made beside the entries and moved in, so no file is copied.
   */
  async writeTree(op: GitSourceOp, dir: string, signal: AbortSignal): Promise<void> {
    const resolved = await this.resolve(op, signal);
    const work = join(dir, `.kiln-git-checkout-${randomBytes(6).toString("hex")}`);
    try {
      const { dir: tree } = await checkoutGit(gitRefOf(op), work, {
        ...this.access(op, signal),
        resolved,
      });
      for (const name of await readdir(tree)) await rename(join(tree, name), join(dir, name));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    // the source's root as BuildKit's snapshot root: 0755, whatever kiln's umask
    await chmod(dir, 0o755);
  }

  private resolve(op: GitSourceOp, signal: AbortSignal): Promise<ResolvedGitRef> {
    const key = resolutionKey(op);
    let p = this.resolving.get(key);
    if (!p) {
      p = resolveGitRef(gitRefOf(op), this.access(op, signal));
      this.resolving.set(key, p);
    }
    return p;
  }
}
