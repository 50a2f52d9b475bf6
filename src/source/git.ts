/**
 * Git sources with BuildKit's syntax: `git://host/repo`, `ssh://…`, `git@host:repo`,
 * `http(s)://host/repo.git`, `github.com/owner/repo`, each optionally followed by `#ref:subdir`
 * or by the query form (`?ref=…&subdir=…`, `tag=`, `branch=`, `checksum=`/`commit=`,
 * `keep-git-dir=`). A checkout is made with Debian's `git` through the process module.
 */
import { lstat, mkdir, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import { KilnError } from "../errors.js";
import { runChecked } from "../process/index.js";
import { resolveInRoot } from "../rootpath/index.js";

export interface GitRef {
  /** what `git fetch` is given: the URL without fragment and query */
  remote: string;
  /** a branch, tag, full ref or commit; empty: the remote's HEAD */
  ref: string;
  /** a directory inside the repository (no leading slash, never `..`) */
  subdir: string;
  /** the commit the checkout must be (a prefix of its sha1) */
  checksum?: string;
  keepGitDir?: boolean;
}

const PROTOCOLS = new Set(["http", "https", "ssh", "git"]);
const SCP_STYLE = /^(?:[A-Za-z0-9_.-]+@)?[A-Za-z0-9.-]+:(?!\/\/)(.+)$/;

function invalid(ref: string, why: string): KilnError {
  return new KilnError("E_GIT_REF", `invalid git source ${ref}: ${why}`, {
    hint: "write git://host/repo, https://host/repo.git or git@host:repo, optionally #ref:subdir",
  });
}

/** `#ref:subdir` → ref and a cleaned subdir, as BuildKit's parseOpts. */
function fragmentOpts(fragment: string): { ref: string; subdir: string } {
  const colon = fragment.indexOf(":");
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? "" : posix.join("/", fragment.slice(colon + 1)).slice(1);
  return { ref, subdir };
}

function parseBool(ref: string, key: string, v: string): boolean {
  if (v === "" || v === "1" || v === "true") return true;
  if (v === "0" || v === "false") return false;
  throw invalid(ref, `invalid ${key} value ${JSON.stringify(v)}`);
}

/** The query options BuildKit accepts after a git URL. */
function applyQuery(ref: string, query: URLSearchParams, out: GitRef): void {
  let tag = "";
  let branch = "";
  for (const key of new Set(query.keys())) {
    const values = query.getAll(key);
    if (values.length > 1) throw invalid(ref, `query ${JSON.stringify(key)} has multiple values`);
    const v = values[0] ?? "";
    const set = (field: "ref" | "subdir", value: string): void => {
      if (out[field] !== "" && out[field] !== value)
        throw invalid(
          ref,
          `${field} conflicts: ${JSON.stringify(out[field])} vs ${JSON.stringify(value)}`,
        );
      out[field] = value;
    };
    switch (key) {
      case "ref":
        set("ref", v);
        break;
      case "tag":
        tag = v.startsWith("refs/tags/") ? v : `refs/tags/${v}`;
        break;
      case "branch":
        branch = v.startsWith("refs/heads/") ? v : `refs/heads/${v}`;
        break;
      case "subdir":
        set("subdir", posix.join("/", v).slice(1));
        break;
      case "checksum":
      case "commit":
        out.checksum = v;
        break;
      case "keep-git-dir":
        out.keepGitDir = parseBool(ref, key, v);
        break;
      default:
        throw invalid(ref, `unexpected query ${JSON.stringify(key)}`);
    }
  }
  if (tag && branch) throw invalid(ref, "branch conflicts with tag");
  if (tag || branch) {
    const named = tag || branch;
    if (out.ref !== "" && out.ref !== named)
      throw invalid(ref, `ref conflicts: ${JSON.stringify(out.ref)} vs ${JSON.stringify(named)}`);
    out.ref = named;
  }
}

/**
 * A git source, or undefined when `ref` is not one (a local path, an `https://` URL that does
 * not end in `.git`, …). Throws for a git URL it cannot use.
 */
export function parseGitRef(ref: string): GitRef | undefined {
  if (ref.startsWith("./") || ref.startsWith("../")) return undefined;
  const proto = /^([A-Za-z0-9]+):\/\//.exec(ref);
  let url: URL;
  if (ref.startsWith("github.com/")) {
    url = new URL(`https://${ref}`);
  } else if (proto) {
    if (!PROTOCOLS.has(proto[1]!.toLowerCase())) return undefined;
    try {
      url = new URL(ref);
    } catch {
      throw invalid(ref, "not a URL");
    }
    if (/^https?:$/.test(url.protocol) && !url.pathname.endsWith(".git")) return undefined;
  } else {
    const scp = SCP_STYLE.exec(ref);
    if (!scp || !ref.includes("@")) return undefined;
    const hash = ref.indexOf("#");
    const out: GitRef = {
      remote: hash < 0 ? ref : ref.slice(0, hash),
      ...fragmentOpts(hash < 0 ? "" : ref.slice(hash + 1)),
    };
    return out;
  }
  const fragment = decodeURIComponent(url.hash.replace(/^#/, ""));
  const query = new URLSearchParams(url.search);
  url.hash = "";
  url.search = "";
  const out: GitRef = { remote: url.toString(), ...fragmentOpts(fragment) };
  applyQuery(ref, query, out);
  return out;
}

const GIT_ENV = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_CONFIG_NOSYSTEM: "1",
  // a checkout must not depend on the user's git configuration
  GIT_CONFIG_GLOBAL: "/dev/null",
};

async function git(args: string[], signal?: AbortSignal): Promise<string> {
  const r = await runChecked("git", args, {
    env: { ...process.env, ...GIT_ENV },
    signal,
    errorCode: "E_GIT",
    hint: "check the repository URL and ref, and that git can reach the server",
  });
  return r.stdout.toString("utf8").trim();
}

/**
 * Clones `ref` into `dest` (which must not exist) and returns the commit and the directory the
 * source stands for (`dest` or its subdir). `.git` is kept only with keepGitDir.
 */
export async function checkoutGit(
  ref: GitRef,
  dest: string,
  opts: { keepGitDir?: boolean; signal?: AbortSignal } = {},
): Promise<{ commit: string; dir: string }> {
  await mkdir(dest);
  const g = (...args: string[]) => git(["-C", dest, ...args], opts.signal);
  await g("init", "-q");
  await g("remote", "add", "origin", ref.remote);
  const want = ref.ref === "" ? "HEAD" : ref.ref;
  if (/^[0-9a-f]{40}$/.test(want)) {
    // a commit: servers need not let a client fetch it by name, so fetch what they advertise
    await g("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*");
    await g("checkout", "-q", "--detach", want);
  } else {
    await g("fetch", "-q", "--depth=1", "origin", want);
    await g("checkout", "-q", "--detach", "FETCH_HEAD");
  }
  const commit = await g("rev-parse", "HEAD");
  if (ref.checksum !== undefined && !commit.startsWith(ref.checksum)) {
    throw new KilnError(
      "E_GIT_CHECKSUM",
      `${ref.remote}#${want} is commit ${commit}, not ${ref.checksum}`,
      { hint: "update the expected commit (--checksum / checksum=) or pin the ref to it" },
    );
  }
  if ((await lstatOrUndefined(join(dest, ".gitmodules"))) !== undefined)
    await g("submodule", "update", "-q", "--init", "--recursive", "--depth=1");
  if (!(ref.keepGitDir ?? opts.keepGitDir ?? false))
    await rm(join(dest, ".git"), { recursive: true, force: true });
  // resolved inside the checkout: a symlink in the repository cannot lead the context out
  const dir =
    ref.subdir === "" ? dest : await resolveInRoot(dest, ref.subdir, { followFinal: true });
  const st = await lstatOrUndefined(dir);
  if (!st?.isDirectory()) {
    throw new KilnError(
      "E_GIT_SUBDIR",
      `${ref.subdir} is not a directory in ${ref.remote}#${want}`,
      {
        hint: "check the subdirectory after the ':' in #ref:subdir",
      },
    );
  }
  return { commit, dir };
}

async function lstatOrUndefined(p: string) {
  try {
    return await lstat(p);
  } catch {
    return undefined;
  }
}
