// Reads a docker-archive tar (`docker save`, kiln's type=docker output) into what the
// compatibility harness compares: the config fields a Dockerfile controls, the history, and the
// final file tree after applying every layer with its whiteouts.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { decompressStream, readTar, type TarEntry } from "../../src/archive/index.js";

/** The image config keys a Dockerfile can set (docker's capitalized names). */
export const CONFIG_KEYS = [
  "Env",
  "Cmd",
  "Entrypoint",
  "WorkingDir",
  "User",
  "Labels",
  "ExposedPorts",
  "Volumes",
  "StopSignal",
  "Healthcheck",
  "Shell",
  "OnBuild",
  "ArgsEscaped",
] as const;

export interface HistoryStep {
  created_by: string;
  empty_layer: boolean;
}

export interface ImageSummary {
  config: Record<string, unknown>;
  history: HistoryStep[];
  /** path → "type mode uid:gid [-> link] [sha256]"; mtimes are kept apart. */
  tree: Record<string, string>;
  /**
   * Seconds of files (not dirs) last written by a COPY/ADD step: both builders read the same
   * context, so these must agree; RUN-made files and directories get build-time stamps.
   */
  mtimes: Record<string, number>;
  layers: number;
  /** Contents of small files, to show what differs (e.g. the output of `RUN id`). */
  small: Record<string, string>;
  /**
   * OCI archives only: the whole config flattened (`variant`, `config.Env`, `history[3]`,
   * `rootfs.diff_ids[1]` → JSON), and the sha256 of its bytes (key order counts there).
   */
  raw?: Record<string, string>;
  configDigest?: string;
}

interface DockerManifest {
  Config: string;
  Layers: string[];
}

interface RawConfig {
  config?: Record<string, unknown>;
  history?: { created_by?: string; empty_layer?: boolean }[];
}

/** Summarizes each platform's image in an OCI layout tar (one index, possibly nested). */
export async function readOciArchive(tarPath: string): Promise<Record<string, ImageSummary>> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-compat-img-"));
  try {
    const x = spawnSync("tar", ["-xf", tarPath, "-C", dir], { encoding: "utf8" });
    if (x.status !== 0) throw new Error(`tar -xf ${tarPath}: ${x.stderr}`);
    const blob = (digest: string): string => join(dir, "blobs", "sha256", digest.slice(7));
    const out: Record<string, ImageSummary> = {};
    const visit = async (descs: OciDescriptor[]): Promise<void> => {
      for (const d of descs) {
        const doc = JSON.parse(await readFile(blob(d.digest), "utf8")) as OciDocument;
        if (doc.manifests) {
          await visit(doc.manifests);
          continue;
        }
        if (!doc.config) continue;
        const bytes = await readFile(blob(doc.config.digest));
        const raw = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
        if (raw.architecture === undefined) continue; // an attestation manifest
        const p = d.platform ?? (raw as unknown as OciPlatform);
        const name = [p.os, p.architecture, p.variant].filter(Boolean).join("/");
        out[name] = await summarize(
          raw,
          (doc.layers ?? []).map((l) => blob(l.digest)),
          true,
        );
        out[name].raw = flatten(raw);
        out[name].configDigest = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
      }
    };
    const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8")) as OciDocument;
    await visit(index.manifests ?? []);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface OciPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

interface OciDescriptor {
  digest: string;
  platform?: OciPlatform;
}

interface OciDocument {
  manifests?: OciDescriptor[];
  config?: OciDescriptor;
  layers?: OciDescriptor[];
}

function sortedJson(v: unknown): string {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return JSON.stringify(v);
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${JSON.stringify(o[k])}`)
    .join(",")}}`;
}

/** One entry per config field, history entry and diff_id, so a difference names its place. */
function flatten(raw: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === "config" && v && typeof v === "object") {
      for (const [ck, cv] of Object.entries(v)) out[`config.${ck}`] = JSON.stringify(cv);
    } else if (k === "history" && Array.isArray(v)) {
      // keys sorted: their order is the config bytes' business (configDigest)
      v.forEach((h, i) => (out[`history[${i}]`] = sortedJson(h)));
    } else if (k === "rootfs" && v && typeof v === "object") {
      const r = v as { type?: string; diff_ids?: string[] };
      out["rootfs.type"] = JSON.stringify(r.type);
      (r.diff_ids ?? []).forEach((id, i) => (out[`rootfs.diff_ids[${i}]`] = id));
    } else out[k] = JSON.stringify(v);
  }
  return out;
}

/** Summarizes the single image in a docker-archive tar. */
export async function readDockerArchive(tarPath: string): Promise<ImageSummary> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-compat-img-"));
  try {
    const x = spawnSync("tar", ["-xf", tarPath, "-C", dir], { encoding: "utf8" });
    if (x.status !== 0) throw new Error(`tar -xf ${tarPath}: ${x.stderr}`);
    const manifests = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as [
      DockerManifest,
    ];
    const m = manifests[0];
    const raw = JSON.parse(await readFile(join(dir, m.Config), "utf8")) as RawConfig;
    return await summarize(
      raw,
      m.Layers.map((l) => join(dir, l)),
      false,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Config, history and the file tree of an image. `allMtimes`: record every entry's mtime (the
 * builds run with SOURCE_DATE_EPOCH, so all agree); otherwise only files COPY/ADD took.
 */
async function summarize(
  raw: RawConfig,
  layerFiles: string[],
  allMtimes: boolean,
): Promise<ImageSummary> {
  {
    const cfg = raw.config ?? {};
    const config: Record<string, unknown> = {};
    for (const k of CONFIG_KEYS) {
      const v = cfg[k];
      // null, "" and {} all mean "unset" to a runtime; builders differ in which they write.
      if (v === undefined || v === null || v === "" || v === false) continue;
      if (typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0) continue;
      config[k] = v;
    }
    const history = (raw.history ?? []).map((h) => ({
      created_by: h.created_by ?? "",
      empty_layer: h.empty_layer === true,
    }));
    // The layers line up with the non-empty history steps.
    const layerSteps = history.filter((h) => !h.empty_layer).map((h) => h.created_by);
    const tree = new Map<string, string>();
    const mtimes = new Map<string, number>();
    const small = new Map<string, string>();
    for (const [i, layer] of layerFiles.entries()) {
      const step = layerSteps[i] ?? "";
      const fromContext =
        allMtimes || /^(COPY|ADD) /.test(step) || /^\/bin\/sh -c #\(nop\) (COPY|ADD)/.test(step);
      await applyLayer(layer, { tree, mtimes, small }, fromContext, allMtimes);
    }
    return {
      config,
      history,
      tree: Object.fromEntries([...tree].sort(([a], [b]) => (a < b ? -1 : 1))),
      mtimes: Object.fromEntries([...mtimes].sort(([a], [b]) => (a < b ? -1 : 1))),
      layers: layerFiles.length,
      small: Object.fromEntries([...small].filter(([p]) => tree.has(p))),
    };
  }
}

function clean(name: string): string {
  return name.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "");
}

interface Tree {
  tree: Map<string, string>;
  mtimes: Map<string, number>;
  small: Map<string, string>;
}

function remove(t: Tree, path: string, andSelf: boolean): void {
  const prefix = path === "" ? "" : path + "/";
  for (const k of [...t.tree.keys()]) {
    if ((andSelf && k === path) || (k.startsWith(prefix) && k !== path)) {
      t.tree.delete(k);
      t.mtimes.delete(k);
    }
  }
}

async function applyLayer(
  file: string,
  t: Tree,
  fromContext: boolean,
  dirMtimes: boolean,
): Promise<void> {
  // Whiteouts apply to the layers below, so entries of this layer are collected first.
  const added: [string, string, TarEntry][] = [];
  const opaque: string[] = [];
  const deleted: string[] = [];
  for await (const { entry, body } of readTar(decompressStream(createReadStream(file)))) {
    const name = clean(entry.name);
    const base = name.slice(name.lastIndexOf("/") + 1);
    const parent = name.includes("/") ? name.slice(0, name.lastIndexOf("/")) : "";
    if (base === ".wh..wh..opq") {
      opaque.push(parent);
      body.resume();
      continue;
    }
    if (base.startsWith(".wh.")) {
      deleted.push((parent === "" ? "" : parent + "/") + base.slice(4));
      body.resume();
      continue;
    }
    let digest = "";
    if (entry.type === "file") {
      const h = createHash("sha256");
      const chunks: Buffer[] = [];
      for await (const chunk of body) {
        h.update(chunk as Buffer);
        if (entry.size <= 512) chunks.push(chunk as Buffer);
      }
      digest = " " + h.digest("hex").slice(0, 16);
      if (entry.size <= 512) t.small.set(name, Buffer.concat(chunks).toString("utf8"));
    } else body.resume();
    added.push([name, describe(entry) + digest, entry]);
  }
  for (const d of opaque) remove(t, d, false);
  for (const d of deleted) remove(t, d, true);
  for (const [name, desc, entry] of added) {
    if (name === "") continue;
    // A non-directory replacing a directory hides what was under it.
    if (t.tree.get(name)?.startsWith("dir ") && entry.type !== "dir") remove(t, name, false);
    t.tree.set(name, desc);
    if (fromContext && (dirMtimes || entry.type !== "dir"))
      t.mtimes.set(name, Math.floor(entry.mtime));
    else t.mtimes.delete(name);
  }
}

function describe(e: TarEntry): string {
  const mode = e.mode.toString(8).padStart(4, "0");
  let s = `${e.type} ${mode} ${e.uid}:${e.gid}`;
  if (e.type === "symlink" || e.type === "hardlink") s += ` -> ${clean(e.linkname ?? "")}`;
  const xattrs = Object.keys(e.xattrs).sort();
  if (xattrs.length > 0) s += ` xattrs=${xattrs.join(",")}`;
  return s;
}
