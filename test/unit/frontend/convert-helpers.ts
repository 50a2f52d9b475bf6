/**
 * Shared setup for the converter tests: an in-memory image resolver (the converter's injected
 * seam) holding configs the tests define, and small graph accessors.
 */
import { createHash } from "node:crypto";
import { KilnError } from "../../../src/errors.js";
import {
  convertDockerfile,
  type ConvertOptions,
  type ConvertResult,
  type ResolvedBaseImage,
} from "../../../src/frontend/dockerfile/convert.js";
import { parseDockerfile } from "../../../src/frontend/dockerfile/index.js";
import { topoSort, type ExecOp, type FileOp, type Vertex } from "../../../src/graph/index.js";
import type { ContainerConfig, ImageConfig } from "../../../src/oci/types.js";
import { formatAll, parseNormalized } from "../../../src/platform/index.js";
import type { Platform } from "../../../src/platform/types.js";

export const AMD64 = parseNormalized("linux/amd64");

function hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

export interface FakeImage {
  config?: ContainerConfig;
  /** layers; 0 makes an empty (scratch-like) image */
  layers?: number;
  /** always answer with this platform (a single-platform image) */
  only?: string;
  /** the config's platform fields as the image wrote them (e.g. arm64 with variant "v8") */
  configPlatform?: { architecture?: string; variant?: string };
}

export const IMAGES: Record<string, FakeImage> = {
  alpine: {},
  busybox: {},
  "golang:1.22": {
    config: {
      Env: ["PATH=/usr/local/go/bin:/usr/bin:/bin", "GOPATH=/go"],
      WorkingDir: "/go",
    },
  },
  "rust:1": { config: { Env: ["PATH=/usr/local/cargo/bin:/usr/bin:/bin", "CARGO_HOME=/cargo"] } },
  "node:20": { config: { Env: ["PATH=/usr/bin:/bin", "NODE_VERSION=20"], Cmd: ["node"] } },
  "tonistiigi/xx": {},
  "gcr.io/distroless/static": { config: { User: "65532" } },
  withcmd: { config: { Cmd: ["/bin/sh"], Entrypoint: ["/init"] } },
  onbuild: { config: { OnBuild: ["RUN echo from-image-trigger", "ENV TRIGGERED=1"] } },
  amd64only: { only: "linux/amd64" },
  emptyimage: { layers: 0 },
  withuser: { config: { User: "app", WorkingDir: "/home/app" } },
};

export function fakeResolver(calls: string[], images: Record<string, FakeImage> = IMAGES) {
  return (name: string, platform: Platform): Promise<ResolvedBaseImage> => {
    calls.push(`${name} ${formatAll(platform)}`);
    const img = images[name];
    if (!img) {
      return Promise.reject(
        new KilnError("E_IMAGE_NOT_FOUND", `${name}: not found`, { hint: "check the name" }),
      );
    }
    const p = img.only ? parseNormalized(img.only) : platform;
    const layers = img.layers ?? 1;
    const digest = "sha256:" + hex(`${name} ${formatAll(p)}`);
    const config: ImageConfig = {
      architecture: p.architecture,
      os: p.os,
      ...(p.variant ? { variant: p.variant } : {}),
      ...img.configPlatform,
      config: structuredClone(img.config ?? { Env: ["PATH=/usr/bin:/bin"] }),
      rootfs: {
        type: "layers",
        diff_ids: Array.from({ length: layers }, (_, i) => `sha256:${hex(`${name}${i}`)}`),
      },
      history: Array.from({ length: layers }, (_, i) => ({ created_by: `base layer ${i}` })),
    };
    return Promise.resolve({
      ref: `registry.test/${name.replace(/:.*/, "")}@${digest}`,
      manifestDigest: digest,
      config,
    });
  };
}

export interface ConvertArgs extends Partial<Omit<ConvertOptions, "targetPlatform">> {
  platform?: string;
  images?: Record<string, FakeImage>;
}

export type Converted = ConvertResult & { calls: string[] };

export async function convert(src: string, a: ConvertArgs = {}): Promise<Converted> {
  const calls: string[] = [];
  const df = parseDockerfile(src, { file: "Dockerfile" });
  const { platform, images, ...rest } = a;
  const res = await convertDockerfile(df, {
    targetPlatform: parseNormalized(platform ?? "linux/amd64"),
    buildPlatform: AMD64,
    multiPlatform: false,
    implicitTarget: platform === undefined,
    buildArgs: {},
    labels: {},
    network: "default",
    extraHosts: [],
    contexts: new Map([["context", { dir: "/ctx", excludePatterns: [] }]]),
    resolveImage: fakeResolver(calls, images),
    ...rest,
  });
  return Object.assign(res, { calls });
}

export function vertices(r: ConvertResult): Vertex[] {
  return r.root ? topoSort([r.root]) : [];
}

export function execs(r: ConvertResult): (Vertex & { op: ExecOp })[] {
  return vertices(r).filter((v): v is Vertex & { op: ExecOp } => v.op.kind === "exec");
}

export function lastExec(r: ConvertResult): ExecOp {
  const e = execs(r);
  if (!e.length) throw new Error("no exec op");
  return e[e.length - 1]!.op;
}

export function files(r: ConvertResult): (Vertex & { op: FileOp })[] {
  return vertices(r).filter((v): v is Vertex & { op: FileOp } => v.op.kind === "file");
}

export function envOf(op: ExecOp): Record<string, string> {
  return Object.fromEntries(
    op.env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]),
  );
}

/** The stage's own history (after the base image's entries). */
export function history(r: ConvertResult): { created_by?: string; empty_layer?: boolean }[] {
  return (r.config.history ?? []).slice(r.baseHistoryLength).map((h) => ({
    created_by: h.created_by,
    ...(h.empty_layer ? { empty_layer: true } : {}),
  }));
}

export function names(r: ConvertResult): string[] {
  return vertices(r)
    .map((v) => v.name)
    .filter((n) => n.startsWith("[") && !n.startsWith("[internal]"));
}
