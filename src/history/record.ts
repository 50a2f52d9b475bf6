/**
 * A build record: what was asked (request, Dockerfile), who ran it, how it ended and what it
 * produced. The per-step story lives beside it as the progress event stream (see store.ts).
 * Secret values never enter a record: only the ids of secrets and ssh agents are kept.
 */
import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import type { BuildRequest, BuildResult, OutputSpec } from "../request/index.js";
import { formatAll } from "../platform/index.js";

export const RECORD_VERSION = 1;

export type RecordStatus = "running" | "completed" | "error" | "canceled";

export interface RecordedRequest {
  context: string;
  /** as given (-f), relative to the context unless absolute */
  dockerfile: string;
  target?: string;
  platforms: string[];
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  tags: string[];
  namedContexts: Record<string, string>;
  outputs: OutputSpec[];
  noCache: boolean;
  noCacheFilter: string[];
  network: string;
  extraHosts: string[];
  /** ids only: a secret's value never reaches history */
  secrets: string[];
  ssh: string[];
  /** entitlements asked for (--allow) */
  allow?: string[];
  cacheFrom?: BuildRequest["cacheFrom"];
  cacheTo?: BuildRequest["cacheTo"];
}

export interface RecordedPlatform {
  platform: string;
  manifestDigest: string;
  configDigest: string;
}

export interface BuildRecord {
  version: number;
  ref: string;
  name: string;
  status: RecordStatus;
  /** ms since the epoch */
  createdAt: number;
  completedAt?: number;
  /** the process that writes the record ("<pid>-<start time>"): a running record whose owner
   * is gone was cut off (SIGKILL, power loss) and reads as canceled */
  owner: string;
  host: string;
  /** the builder a remote build ran on */
  builder?: string;
  /** set when a kilnd node recorded its part of a (multi-node) build */
  node?: string;
  request: RecordedRequest;
  dockerfile: { name: string; content?: string };
  result?: {
    digest: string;
    imageNames: string[];
    platforms: RecordedPlatform[];
  };
  error?: { code: string; message: string; hint?: string };
  /** step counts, written when the build ends */
  steps?: StepCounts;
  /** when the record came in through `kiln history import` */
  importedAt?: number;
}

export interface StepCounts {
  total: number;
  completed: number;
  cached: number;
}

/** A new build reference: 25 lowercase letters and digits, like BuildKit's build ids. */
export function newRef(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(25)].map((b) => alphabet[b % alphabet.length]).join("");
}

/** What a ref may look like on disk (it names a directory: no separators, no dots). */
export const REF_PATTERN = /^[a-z0-9]{1,64}$/;

/** The request as history keeps it: every field but secret values. */
export function recordRequest(req: BuildRequest): RecordedRequest {
  return {
    context: req.contextDir,
    dockerfile: req.dockerfile,
    target: req.target,
    platforms: req.platforms.map(formatAll),
    buildArgs: { ...req.buildArgs },
    labels: { ...req.labels },
    tags: [...req.tags],
    namedContexts: { ...req.namedContexts },
    outputs: req.outputs.map((o) => ({ ...o })),
    noCache: req.noCache,
    noCacheFilter: [...req.noCacheFilter],
    network: req.network,
    extraHosts: req.extraHosts.map((h) => `${h.host}:${h.ip}`),
    secrets: Object.keys(req.secrets),
    ssh: Object.keys(req.ssh),
    allow: [...(req.allow ?? [])],
    cacheFrom: req.cacheFrom?.map((c) => ({ ...c })),
    cacheTo: req.cacheTo?.map((c) => ({ ...c })),
  };
}

export function recordResult(result: BuildResult): NonNullable<BuildRecord["result"]> {
  return {
    digest: result.digest,
    imageNames: [...result.imageNames],
    platforms: result.platforms.map((p) => ({
      platform: formatAll(p.platform),
      manifestDigest: p.manifestDigest,
      configDigest: p.configDigest,
    })),
  };
}

/**
 * The name `history ls` shows, as buildx: BUILDKIT_BUILD_NAME when set, else the context
 * directory's name (with the Dockerfile's when it is not the default), and the target.
 */
export function buildName(req: RecordedRequest): string {
  const given = req.buildArgs.BUILDKIT_BUILD_NAME;
  if (given) return given;
  let name = basename(req.context);
  const file = basename(req.dockerfile);
  if (file !== "Dockerfile") name = `${name}/${file}`;
  return req.target ? `${name} (${req.target})` : name;
}
