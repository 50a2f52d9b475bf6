/**
 * Sending a build's result to its outputs (buildx's exporters): the local image store or a
 * registry (`image`/`registry`), an OCI layout or `docker load` tarball (`oci`/`docker`), or
 * the files themselves (`local`/`tar`, one `os_arch[_variant]/` tree per platform when split).
 */
import { createWriteStream } from "node:fs";
import { lstat, lutimes, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import type { Readable, Writable } from "node:stream";
import { dirToTar } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import type { OutputSpec } from "../request/index.js";
import { KilnError, messageOf } from "../errors.js";
import type { Descriptor } from "../oci/index.js";
import { formatAll } from "../platform/index.js";
import { runChecked } from "../process/index.js";
import type { ProgressSink } from "../progress/index.js";
import { formatReference, parseReference, registryHost } from "../reference/index.js";
import { pushImage, type RegistryClient } from "../registry/index.js";
import type { Snapshotter } from "../snapshot/index.js";
import type { AssembleOptions, AssembledImage, PlatformImage } from "./image.js";
import { rootDescriptor, writeImageTar, writeOciDir } from "./outputs.js";
import { writeAttestationFiles } from "../attest/files.js";
import type { Attestation } from "../attest/index.js";

export interface ExportContext {
  content: ContentStore;
  snapshots: Snapshotter;
  client: RegistryClient;
  sink: ProgressSink;
  tmpDir: string;
  assembled: AssembledImage;
  platformImages: readonly PlatformImage[];
  /** SOURCE_DATE_EPOCH (seconds): clamps file mtimes of local and tar outputs */
  epoch?: number;
  /** layers of an imported build cache that were not fetched: mounted or streamed on push */
  remoteBlobs?: {
    /** repositories of `registry` the blobs can be mounted from */
    mountFrom(registry: string): string[];
    open(desc: Descriptor): Readable;
  };
  /** per platform: attestations; local/tar outputs write the non-inline-only ones as files */
  attestations?: readonly (readonly Attestation[])[];
}

/** Wraps a step of the export in a progress vertex of its own. */
export async function exportStep<T>(
  sink: ProgressSink,
  id: string,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  const started = Date.now();
  sink.write({ type: "vertex", id, name, started });
  try {
    const r = await fn();
    sink.write({ type: "vertex", id, name, completed: Date.now() });
    return r;
  } catch (e) {
    sink.write({ type: "vertex", id, name, completed: Date.now(), error: messageOf(e) });
    throw e;
  }
}

/**
 * How the image is assembled for these outputs. One image serves every output, so image
 * outputs must agree on compression and media types (the CLI checks); annotations of all
 * image-writing outputs apply.
 */
export function assembleOptionsFor(
  outputs: readonly OutputSpec[],
  epoch: number | undefined,
  attestations?: readonly (readonly Attestation[])[],
): AssembleOptions {
  const image = outputs.find((o) => o.type === "image");
  const annotations: Record<string, string> = {};
  for (const o of outputs) if ("annotations" in o) Object.assign(annotations, o.annotations);
  // statements name the image as the first output that names it (BuildKit: per exporter)
  const named = outputs.find(
    (o): o is Extract<OutputSpec, { names: string[] }> => "names" in o && o.names.length > 0,
  );
  return {
    compression: image?.compression ?? "gzip",
    compressionLevel: image?.compressionLevel,
    forceCompression: image?.forceCompression ?? false,
    epoch,
    ociMediaTypes: image?.ociMediaTypes ?? true,
    annotations,
    attestations,
    subjectNames: named?.names ?? [],
  };
}

/** Sends the result to one output; returns the image names it was stored or pushed as. */
export async function exportOutput(out: OutputSpec, x: ExportContext): Promise<string[]> {
  const root = rootDescriptor(x.assembled);
  switch (out.type) {
    case "image": {
      const names = out.names.map((n) => formatReference(parseReference(n)));
      if (!out.push) {
        await exportStep(x.sink, "export:store", "storing image in kiln's store", async () => {
          if (names.length === 0) await x.content.addToIndex(root);
          for (const n of names) await x.content.addToIndex(root, n);
        });
        return names;
      }
      if (names.length === 0) {
        throw new KilnError("E_OUTPUT", "nothing to push to: no image name given", {
          hint: "add -t registry/repo:tag (or name=… in the --output)",
        });
      }
      const pushed: string[] = [];
      const fresh = statementsOf(x.assembled);
      for (const name of names) {
        const ref = parseReference(name);
        const repo = { registry: registryHost(ref), repository: ref.repository };
        const byDigest = `${ref.registry}/${ref.repository}@${root.digest}`;
        // children by digest first, then the root, tagged last (pushImage's order)
        const tags = out.pushByDigest || !ref.tag ? [] : [ref.tag];
        await exportStep(
          x.sink,
          `export:push:${name}`,
          `pushing ${out.pushByDigest ? byDigest : name}`,
          () =>
            pushImage(x.client, x.content, root, repo, tags, {
              mountFrom: x.remoteBlobs?.mountFrom(repo.registry),
              openMissing: x.remoteBlobs && ((d) => x.remoteBlobs!.open(d)),
              fresh,
            }),
        );
        pushed.push(out.pushByDigest ? `${ref.registry}/${ref.repository}` : name);
        if (out.nameCanonical) pushed.push(byDigest);
      }
      return pushed;
    }
    case "oci":
    case "docker": {
      const names = out.names.map((n) => formatReference(parseReference(n)));
      await exportStep(x.sink, `export:${out.type}`, `exporting to ${out.type} image format`, () =>
        out.tar
          ? writeImageTar(x.content, x.assembled, out.dest, names, out.type)
          : out.type === "oci"
            ? writeOciDir(x.content, x.assembled, out.dest, names)
            : Promise.reject(
                new KilnError(
                  "E_OUTPUT",
                  "type=docker writes a tarball: tar=false is for type=oci",
                  {
                    hint: "use type=oci,tar=false,dest=DIR for a layout directory",
                  },
                ),
              ),
      );
      return names;
    }
    case "local":
    case "tar":
      await exportStep(
        x.sink,
        `export:${out.type}`,
        `copying files to ${out.dest === "-" ? "stdout" : out.dest}`,
        () => exportFiles(out, x),
      );
      return [];
  }
}

/** `linux/arm/v7` → `linux_arm_v7`, the directory name BuildKit's platform split uses. */
export function platformDir(img: PlatformImage): string {
  return formatAll(img.platform).replace(/\//g, "_");
}

/** The final filesystem(s) as files: one tree, or `linux_amd64/…` per platform. */
async function exportFiles(
  out: Extract<OutputSpec, { type: "local" | "tar" }>,
  x: ExportContext,
): Promise<void> {
  const split = out.platformSplit ?? x.platformImages.length > 1;
  if (!split && x.platformImages.length > 1) {
    throw new KilnError("E_OUTPUT", "platform-split=false needs a single platform", {
      hint: "build one platform, or drop platform-split=false to get one directory per platform",
    });
  }
  const files = (i: number): readonly Attestation[] =>
    (x.attestations?.[i] ?? []).filter((a) => !a.inlineOnly);
  // a tar is written from one directory: several platforms (or files and their attestations)
  // are staged side by side first
  const staging =
    out.type === "tar" && (split || files(0).length > 0)
      ? join(x.tmpDir, `export-${randomBytes(8).toString("hex")}`)
      : undefined;
  const base = staging ?? (out.type === "local" ? out.dest : undefined);
  try {
    for (const [i, img] of x.platformImages.entries()) {
      const view = await x.snapshots.prepare(
        `export-${randomBytes(8).toString("hex")}`,
        img.result.layers.map((l) => l.snapshot),
      );
      try {
        if (base === undefined) {
          await writeTar(view.rootfs, out.dest, x.epoch);
          continue;
        }
        const dir = split ? join(base, platformDir(img)) : base;
        await mkdir(dir, { recursive: true });
        await runChecked("cp", ["-a", "--", `${view.rootfs}/.`, dir], { errorCode: "E_OUTPUT" });
        await writeAttestationFiles(dir, files(i));
        if (x.epoch !== undefined && staging === undefined) await clampTimes(dir, x.epoch);
      } finally {
        await view.release();
      }
    }
    if (staging !== undefined) await writeTar(staging, out.dest, x.epoch);
  } finally {
    if (staging !== undefined) await rm(staging, { recursive: true, force: true });
  }
}

async function writeTar(dir: string, dest: string, epoch: number | undefined): Promise<void> {
  const sink: Writable = dest === "-" ? process.stdout : createWriteStream(dest);
  // stdout stays open for whatever kiln prints after the tar
  await pipeline(dirToTar(dir, { mtime: epoch }), sink, { end: dest !== "-" });
}

/** Sets every mtime (and atime) later than the epoch to it, as the layer tars do. */
async function clampTimes(dir: string, epoch: number): Promise<void> {
  const limit = epoch * 1000;
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    if (st.isDirectory()) for (const name of await readdir(path)) await visit(join(path, name));
    // after the children, whose updates touch the directory's mtime
    if (st.mtimeMs > limit || st.atimeMs > limit) {
      const at = new Date(Math.min(st.atimeMs, limit));
      await lutimes(path, at, new Date(Math.min(st.mtimeMs, limit)));
    }
  };
  await visit(dir);
}

/**
 * The in-toto statements this export made: new to any registry unless a build made the same
 * before (they hold its times), and then pushed again harmlessly, or known from the push record.
 */
function statementsOf(assembled: AssembledImage): Set<string> {
  return new Set(assembled.attestations.flatMap((a) => a.manifest.layers.map((l) => l.digest)));
}
