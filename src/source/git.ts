/**
 * Git sources with BuildKit's syntax: `git://host/repo`, `ssh://…`, `user@host:repo`,
 * `http(s)://host/repo.git`, `github.com/owner/repo`, each optionally followed by `#ref:subdir`
 * or by the query form (`?ref=…&subdir=…`, `tag=`, `branch=`, `checksum=`/`commit=`,
 * `keep-git-dir=`, `submodules=`, `fetch-by-commit=`, `mtime=`). A ref is resolved to a commit
 * with `git ls-remote` (BuildKit's matching: a full ref, then a branch, then a tag), and a
 * checkout of that commit is made with Debian's `git` through the process module.
 */
import { lstat, mkdir, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import { KilnError } from "../errors.js";
import { run } from "../process/index.js";
import { resolveInRoot } from "../rootpath/index.js";

export interface GitRef {
  /** what `git fetch` is given: the URL without fragment and query */
  remote: string;
  /** a branch, tag, full ref or commit; empty: the remote's HEAD */
  ref: string;
  /** a directory inside the repository (no leading slash, never `..`) */
  subdir: string;
  /** the commit (or annotated tag object) the ref must resolve to: a hex prefix of its sha */
  checksum?: string;
  keepGitDir?: boolean;
  /** `submodules=false` skips them; they are checked out otherwise */
  submodules?: boolean;
  /** `fetch-by-commit`: the checksum (a full sha) is the commit, the ref is not looked up */
  fetchByCommit?: boolean;
  /**
   * `github.com/owner/repo`: a git build context, but a local path for ADD (BuildKit's
   * IndistinguishableFromLocal)
   */
  indistinguishableFromLocal?: boolean;
}

/** A ref resolved on the remote. */
export interface ResolvedGitRef {
  commit: string;
  /** the full ref the remote matched (refs/heads/x, refs/tags/x); absent for a commit sha */
  fullRef?: string;
  /** an annotated tag's own object, when the ref named one */
  tagObject?: string;
}

const PROTOCOLS = new Set(["http", "https", "ssh", "git"]);
/** sshutil's scp-like form `user@host:path[?query][#fragment]` (the user is required). */
const SCP_STYLE = /^([A-Za-z0-9_-]+)@([A-Za-z0-9.-]+):(.*?)(?:\?(.*?))?(?:#(.*))?$/;
const COMMIT_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
/** Query keys that stand for `true` without a value. */
const FLAG_KEYS = new Set(["submodules", "keep-git-dir", "fetch-by-commit"]);

function invalid(ref: string, why: string): KilnError {
  return new KilnError("E_GIT_REF", `invalid git source ${redactUrl(ref)}: ${why}`, {
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

/** Go's strconv.ParseBool; a flag key without a value is true. */
function parseBool(ref: string, key: string, v: string): boolean {
  if (v === "" || /^(1|t|T|TRUE|true|True)$/.test(v)) return true;
  if (/^(0|f|F|FALSE|false|False)$/.test(v)) return false;
  throw invalid(ref, `invalid ${key} value ${JSON.stringify(v)}`);
}

/** The query options BuildKit accepts after a git URL (dfgitutil's loadQuery). */
function applyQuery(ref: string, query: URLSearchParams, out: GitRef): void {
  let tag = "";
  let branch = "";
  for (const key of new Set(query.keys())) {
    const values = query.getAll(key);
    if (values.length > 1) throw invalid(ref, `query ${JSON.stringify(key)} has multiple values`);
    const v = values[0] ?? "";
    if (v === "" && !FLAG_KEYS.has(key))
      throw invalid(ref, `query ${JSON.stringify(key)} has no value`);
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
      case "submodules":
        out.submodules = parseBool(ref, key, v);
        break;
      case "fetch-by-commit":
        if (parseBool(ref, key, v)) out.fetchByCommit = true;
        break;
      case "mtime":
        // parsed and checked, but the Dockerfile frontend (1.26) does not pass it on: files
        // keep their checkout time in BuildKit, and so in kiln
        if (v !== "checkout" && v !== "commit")
          throw invalid(ref, `invalid mtime value ${JSON.stringify(v)} (checkout or commit)`);
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
    if (!scp) return undefined;
    const out: GitRef = {
      remote: `${scp[1]}@${scp[2]}:${scp[3]}`,
      ...fragmentOpts(scp[5] ?? ""),
    };
    applyQuery(ref, new URLSearchParams(scp[4] ?? ""), out);
    return out;
  }
  const fragment = decodeURIComponent(url.hash.replace(/^#/, ""));
  const query = new URLSearchParams(url.search);
  url.hash = "";
  url.search = "";
  const out: GitRef = { remote: url.toString(), ...fragmentOpts(fragment) };
  if (ref.startsWith("github.com/")) out.indistinguishableFromLocal = true;
  applyQuery(ref, query, out);
  return out;
}

/** A URL for messages and `.git/config`: a password in it is replaced (BuildKit's redaction). */
export function redactUrl(s: string): string {
  return s.replace(/^([A-Za-z0-9+.-]+:\/\/[^/@:]*):[^/@]*@/, "$1:xxxxx@");
}

/** How git may reach a remote: for aborting, and the credentials it may use (none if absent). */
export interface GitAccess {
  signal?: AbortSignal;
  /** SSH_AUTH_SOCK for ssh remotes; git sees no agent without it */
  sshAuthSock?: string;
  /** the Authorization header for an http(s) remote (see gitAuthHeader) */
  authHeader?: string;
}

/**
 * The Authorization header BuildKit sends to an http(s) git remote, from the build secrets
 * `GIT_AUTH_HEADER.<host>`, `GIT_AUTH_TOKEN.<host>`, `GIT_AUTH_HEADER`, `GIT_AUTH_TOKEN` (the
 * first one given; a token is sent as basic `x-access-token:<token>`).
 */
export function gitAuthHeader(
  remote: string,
  secrets: ReadonlyMap<string, Buffer>,
): string | undefined {
  let host: string;
  try {
    const u = new URL(remote);
    if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
    host = u.host;
  } catch {
    return undefined;
  }
  for (const [name, token] of [
    [`GIT_AUTH_HEADER.${host}`, false],
    [`GIT_AUTH_TOKEN.${host}`, true],
    ["GIT_AUTH_HEADER", false],
    ["GIT_AUTH_TOKEN", true],
  ] as const) {
    const v = secrets.get(name)?.toString("utf8");
    if (v === undefined) continue;
    return token ? `basic ${Buffer.from(`x-access-token:${v}`).toString("base64")}` : v;
  }
  return undefined;
}

/** Where a remote's auth header applies: the remote, or all of github.com (as BuildKit). */
function authScope(remote: string): string {
  const github = ["https://github.com/", "https://www.github.com/"].find((p) =>
    remote.startsWith(p),
  );
  return github ?? remote;
}

const PROXY_VARS = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "all_proxy",
];

/**
 * BuildKit's environment for git: no prompt, no system or user configuration, ssh without the
 * user's ssh config and with the host key taken as offered (BuildKit scans it), the proxy
 * variables, and an ssh agent or an http auth header only when the build was given one.
 */
function gitEnv(remote: string, access: GitAccess): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_TERMINAL_PROMPT: "0",
    GIT_SSH_COMMAND: "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    HOME: "/dev/null",
    GIT_CONFIG_GLOBAL: "/dev/null",
  };
  for (const v of PROXY_VARS) if (process.env[v] !== undefined) env[v] = process.env[v];
  if (access.sshAuthSock) env.SSH_AUTH_SOCK = access.sshAuthSock;
  if (access.authHeader !== undefined) {
    // through the environment, not argv: other users of the machine can read a command line
    env.GIT_CONFIG_COUNT = "1";
    env.GIT_CONFIG_KEY_0 = `http.${authScope(remote)}.extraheader`;
    env.GIT_CONFIG_VALUE_0 = `Authorization: ${access.authHeader}`;
  }
  return env;
}

/**
 * Runs git with the umask BuildKit gives it (022: files 0644/0755 whatever kiln's umask is)
 * and no local-file transport (a submodule cannot pull files of this machine into a build).
 * Fails with `code` and a message that says what could not be done.
 */
async function git(
  remote: string,
  what: string,
  args: string[],
  access: GitAccess,
): Promise<string> {
  const r = await run(
    "sh",
    ["-c", 'umask 022 && exec git -c protocol.file.allow=never "$@"', "git", ...args],
    { env: gitEnv(remote, access), signal: access.signal },
  );
  if (r.exitCode !== 0) {
    const detail = r.stderr.trim().split(remote).join(redactUrl(remote));
    throw new KilnError(
      "E_GIT",
      `cannot ${what} ${redactUrl(remote)}${detail ? `: ${detail}` : ""}`,
      { hint: "check the repository URL and ref, and that git can reach the server" },
    );
  }
  return r.stdout.toString("utf8").trim();
}

function checksumMismatch(ref: GitRef, want: string, got: string): KilnError {
  return new KilnError(
    "E_GIT_CHECKSUM",
    `${redactUrl(ref.remote)}#${want} is commit ${got}, not ${ref.checksum}`,
    { hint: "update the expected commit (--checksum / checksum=) or pin the ref to it" },
  );
}

/**
 * The ref `want` picks from `git ls-remote` output, as BuildKit matches it: `refs/<want>`
 * exactly, else the branch, else the tag (an annotated tag resolves to the commit it points
 * to, keeping its own object); undefined when nothing matches.
 */
export function matchRemoteRef(listing: string, want: string): ResolvedGitRef | undefined {
  const partialRef = want === "HEAD" ? "HEAD" : `refs/${want.replace(/^refs\//, "")}`;
  const headRef = `refs/heads/${want.replace(/^refs\/heads\//, "")}`;
  const tagRef = `refs/tags/${want.replace(/^refs\/tags\//, "")}`;
  let exact: string | undefined;
  let head: string | undefined;
  let tag: string | undefined;
  let peeled: string | undefined;
  for (const line of listing.split("\n")) {
    const [sha = "", name = ""] = line.split("\t");
    if (name === partialRef) exact = sha;
    else if (name === headRef) head = sha;
    else if (name === tagRef) tag = sha;
    else if (name === `${tagRef}^{}`) peeled = sha;
  }
  // git checkout prefers a branch when a name is both a branch and a tag
  if (exact !== undefined) {
    // an exact refs/tags/x of an annotated tag still peels to its commit
    if (partialRef === tagRef && peeled !== undefined)
      return { commit: peeled, fullRef: tagRef, tagObject: exact };
    return { commit: exact, fullRef: partialRef };
  }
  if (head !== undefined) return { commit: head, fullRef: headRef };
  if (tag === undefined) return undefined;
  return peeled !== undefined
    ? { commit: peeled, fullRef: tagRef, tagObject: tag }
    : { commit: tag, fullRef: tagRef };
}

/**
 * The commit `ref` stands for on its remote, with BuildKit's rules: a full sha is taken as
 * is; otherwise `git ls-remote` matches the ref as a full ref, a branch, then a tag (the
 * remote's default branch when there is no ref). The checksum must prefix the commit or the
 * annotated tag object.
 */
export async function resolveGitRef(ref: GitRef, access: GitAccess = {}): Promise<ResolvedGitRef> {
  const checksum = ref.checksum;
  if (checksum !== undefined && !/^[0-9a-fA-F]+$/.test(checksum)) {
    throw new KilnError(
      "E_GIT_CHECKSUM",
      `invalid checksum ${checksum} for ${redactUrl(ref.remote)}: expected a hex commit hash`,
      { hint: "give the commit's sha (or a prefix of it)" },
    );
  }
  if (COMMIT_SHA.test(ref.ref)) {
    if (checksum !== undefined && !ref.ref.startsWith(checksum))
      throw checksumMismatch(ref, ref.ref, ref.ref);
    return { commit: ref.ref };
  }
  if (ref.fetchByCommit) {
    if (checksum === undefined || !COMMIT_SHA.test(checksum)) {
      throw new KilnError(
        "E_GIT_CHECKSUM",
        `fetch-by-commit needs the full commit sha as checksum, got ${checksum ?? "none"}`,
        { hint: "add checksum=<40 hex digits> to the git URL" },
      );
    }
    return { commit: checksum };
  }
  let want = ref.ref;
  if (want === "") {
    // the default branch by name, so a kept .git has it as a local branch (as BuildKit)
    const head = await git(
      ref.remote,
      "list the refs of",
      ["ls-remote", "--symref", "--", ref.remote, "HEAD"],
      access,
    );
    want = /^ref: (\S+)\tHEAD$/m.exec(head)?.[1] ?? "HEAD";
  }
  const listing = await git(
    ref.remote,
    "list the refs of",
    ["ls-remote", "--", ref.remote, want, `${want}^{}`],
    access,
  );
  const resolved = matchRemoteRef(listing, want);
  if (resolved === undefined) {
    throw new KilnError(
      "E_GIT_REF_NOT_FOUND",
      `${redactUrl(ref.remote)} has no branch or tag ${JSON.stringify(want)}`,
      { hint: "check the ref after '#' (a branch, a tag, a full ref or a full commit sha)" },
    );
  }
  if (
    checksum !== undefined &&
    !resolved.commit.startsWith(checksum) &&
    !(resolved.tagObject ?? "").startsWith(checksum)
  )
    throw checksumMismatch(ref, want, resolved.commit);
  return resolved;
}

/**
 * Checks `ref` out into `dest` (which must not exist) and returns the commit and the directory
 * the source stands for (`dest` or its subdir). The checkout is of the resolved commit (given,
 * or resolved here): a branch that moves meanwhile is an error, not another tree. `.git` is
 * kept only with keepGitDir, then shaped as BuildKit's: the ref as a local ref, HEAD detached
 * at the commit, the origin URL without password, no reflog and no FETCH_HEAD.
 */
export async function checkoutGit(
  ref: GitRef,
  dest: string,
  opts: GitAccess & { keepGitDir?: boolean; resolved?: ResolvedGitRef } = {},
): Promise<{ commit: string; dir: string }> {
  const resolved = opts.resolved ?? (await resolveGitRef(ref, opts));
  const keep = ref.keepGitDir ?? opts.keepGitDir ?? false;
  await mkdir(dest);
  const g = (what: string, ...args: string[]) => git(ref.remote, what, ["-C", dest, ...args], opts);
  await g("set up a checkout of", "init", "-q");
  await g("set up a checkout of", "remote", "add", "origin", ref.remote);
  if (resolved.fullRef !== undefined) {
    const named = keep && resolved.fullRef.startsWith("refs/");
    const spec = named ? `${resolved.fullRef}:${resolved.fullRef}` : resolved.fullRef;
    await g("fetch", "fetch", "-q", "-u", "--depth=1", "origin", spec);
    const fetched = await g("fetch", "rev-parse", "FETCH_HEAD^{commit}");
    if (fetched !== resolved.commit) {
      throw new KilnError(
        "E_GIT_CHANGED",
        `${redactUrl(ref.remote)} ${resolved.fullRef} moved during the build: was ${resolved.commit}, now ${fetched}`,
        { hint: "run the build again" },
      );
    }
  } else {
    // a commit: by name where the server allows it (protocol v2 servers do), else all the
    // server advertises
    await g("fetch", "fetch", "-q", "--depth=1", "origin", resolved.commit).catch(() =>
      g("fetch", "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"),
    );
  }
  await g(`check out commit ${resolved.commit} of`, "checkout", "-q", "--detach", resolved.commit);
  const commit = await g("check out", "rev-parse", "HEAD");
  if (ref.submodules !== false && (await lstatOrUndefined(join(dest, ".gitmodules"))) !== undefined)
    await g(
      "update the submodules of",
      "submodule",
      "update",
      "-q",
      "--init",
      "--recursive",
      "--depth=1",
    );
  if (keep) {
    await g("set up a checkout of", "remote", "set-url", "origin", redactUrl(ref.remote));
    await g("set up a checkout of", "reflog", "expire", "--all", "--expire=now");
    await rm(join(dest, ".git", "FETCH_HEAD"), { force: true });
  } else await rm(join(dest, ".git"), { recursive: true, force: true });
  // resolved inside the checkout: a symlink in the repository cannot lead the source out
  const dir =
    ref.subdir === "" ? dest : await resolveInRoot(dest, ref.subdir, { followFinal: true });
  const st = await lstatOrUndefined(dir);
  if (!st?.isDirectory()) {
    throw new KilnError(
      "E_GIT_SUBDIR",
      `${ref.subdir} is not a directory in ${redactUrl(ref.remote)}#${ref.ref || "HEAD"}`,
      { hint: "check the subdirectory after the ':' in #ref:subdir" },
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
