/**
 * The build graph (our LLB): immutable vertices whose digest covers the op definition, the
 * platform and the inputs' digests. Identical work for several target platforms (a
 * `FROM --platform=$BUILDPLATFORM` stage) therefore yields identical digests, and the solver
 * runs it once.
 */
import { createHash } from "node:crypto";
import type { Platform } from "../platform/types.js";

/** An image pinned by digest; `ref` is `registry/repo@sha256:…` (or a local store name). */
export interface ImageSourceOp {
  kind: "image";
  ref: string;
  /** manifest digest of the platform-specific image */
  manifestDigest: string;
}

/** Files from a build context (the main one or a named one). */
export interface LocalSourceOp {
  kind: "local";
  name: string;
  /** absolute path on the client; not part of the digest (content checksums are) */
  dir: string;
  excludePatterns: string[];
}

export interface HttpSourceOp {
  kind: "http";
  url: string;
  checksum?: string;
  filename?: string;
}

/**
 * A git repository's tree at a ref (ADD <git URL>); the resolved commit enters the cache key.
 * Optional fields are absent rather than false, so older graphs keep their digests.
 */
export interface GitSourceOp {
  kind: "git";
  /** the URL git fetches from (no fragment, no query) */
  remote: string;
  /** branch, tag, full ref or commit sha; empty: the remote's default branch */
  ref: string;
  /** a directory of the repository that becomes the source's root */
  subdir?: string;
  /** the commit (a hex prefix of its sha) the ref must resolve to */
  checksum?: string;
  keepGitDir?: true;
  skipSubmodules?: true;
  fetchByCommit?: true;
}

export type ExecMount =
  | { type: "bind"; target: string; input: number; source: string; readonly: boolean }
  | {
      type: "cache";
      target: string;
      id: string;
      sharing: "shared" | "private" | "locked";
      readonly: boolean;
      /** optional seed input (`from=`) and path in it (`source=`) */
      input?: number;
      source?: string;
      mode: number;
      uid: number;
      gid: number;
    }
  | { type: "tmpfs"; target: string; size?: number }
  | {
      type: "secret";
      target?: string;
      env?: string;
      id: string;
      required: boolean;
      mode: number;
      uid: number;
      gid: number;
    }
  | {
      type: "ssh";
      target: string;
      id: string;
      required: boolean;
      mode: number;
      uid: number;
      gid: number;
    };

export interface ExecOp {
  kind: "exec";
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  network: "default" | "none" | "host";
  /** only when insecure (`RUN --security=insecure`): absent keeps sandboxed digests stable */
  security?: "insecure";
  /** root filesystem is always input 0 */
  mounts: ExecMount[];
  extraHosts?: { host: string; ip: string }[];
  hostname?: string;
}

export interface Chown {
  user: string;
  group?: string;
}

export type FileAction =
  | {
      action: "copy";
      /** input index the files come from */
      input: number;
      src: string;
      dest: string;
      chown?: Chown;
      chmod?: string;
      followSymlinks: boolean;
      /** copy a directory's contents rather than the directory (Dockerfile COPY semantics) */
      dirContents: boolean;
      allowWildcard: boolean;
      allowEmptyWildcard: boolean;
      createDestPath: boolean;
      /** ADD: unpack local archives */
      unpack: boolean;
      excludes: string[];
      /** COPY --parents: keep the source's parent directories (relative to the pivot) */
      parents: boolean;
      /**
       * COPY --link --chmod: created parent directories get the default mode, not the
       * --chmod one, because on merge they replace the stage's directories of that name
       */
      linkedParents?: true;
    }
  | { action: "mkdir"; path: string; mode: number; makeParents: boolean; chown?: Chown }
  | { action: "mkfile"; path: string; data: string; mode: number; chown?: Chown }
  | { action: "rm"; path: string; allowNotFound: boolean; allowWildcard: boolean };

/** File operations on input 0 (the destination; -1 means scratch). */
export interface FileOp {
  kind: "file";
  actions: FileAction[];
  /** index of the destination input, or -1 for an empty filesystem */
  dest: number;
}

/** Layers of every input stacked in order (COPY --link). */
export interface MergeOp {
  kind: "merge";
}

export type Op =
  ImageSourceOp | LocalSourceOp | HttpSourceOp | GitSourceOp | ExecOp | FileOp | MergeOp;

export interface Vertex {
  readonly digest: string;
  readonly op: Op;
  readonly inputs: readonly Vertex[];
  readonly platform: Platform | undefined;
  /** display name, e.g. `[linux/arm64 build 3/5] RUN make`; not part of the digest */
  readonly name: string;
}

/** JSON with object keys sorted at every level: the canonical encoding used for digests. */
export function canonicalJSON(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

export function sha256(data: string | Uint8Array): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/** What identifies an op: its definition minus fields that must not affect caching. */
function definitionOf(op: Op): unknown {
  if (op.kind === "local") {
    // The client path is incidental; the content checksum enters the cache key instead.
    return { kind: op.kind, name: op.name, excludePatterns: op.excludePatterns };
  }
  return op;
}

export function vertex(
  op: Op,
  inputs: readonly Vertex[],
  platform: Platform | undefined,
  name: string,
): Vertex {
  const digest = sha256(
    canonicalJSON({
      op: definitionOf(op),
      platform: platform ?? null,
      inputs: inputs.map((i) => i.digest),
    }),
  );
  return Object.freeze({ digest, op, inputs: Object.freeze([...inputs]), platform, name });
}

/** What v does, apart from its inputs: its op's definition and platform (a content key's part). */
export function opDigest(v: Vertex): string {
  return sha256(canonicalJSON({ op: definitionOf(v.op), platform: v.platform ?? null }));
}

/** Every vertex reachable from the roots, inputs before dependants, each once. */
export function topoSort(roots: readonly Vertex[]): Vertex[] {
  const seen = new Set<string>();
  const out: Vertex[] = [];
  const visit = (v: Vertex): void => {
    if (seen.has(v.digest)) return;
    seen.add(v.digest);
    for (const i of v.inputs) visit(i);
    out.push(v);
  };
  for (const r of roots) visit(r);
  return out;
}

/** A readable dump of the graph for `--print-graph` and bug reports. */
export function printGraph(roots: readonly Vertex[]): string {
  const lines: string[] = [];
  for (const v of topoSort(roots)) {
    const short = v.digest.slice(7, 19);
    const ins = v.inputs.map((i) => i.digest.slice(7, 19)).join(",");
    lines.push(`${short} ${v.op.kind.padEnd(5)} [${ins}] ${v.name}`);
  }
  return lines.join("\n");
}
