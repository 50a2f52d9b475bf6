/**
 * File outputs of a remote build: each node streams back what it wrote per output (an OCI
 * layout, or the platforms' files), and the client assembles them where the user asked — one
 * OCI layout whose index lists every node's platforms, or one directory per platform.
 */
import { createWriteStream } from "node:fs";
import { copyFile, link, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { dirToTar } from "../archive/index.js";
import type { BuildResult, OutputSpec } from "../request/index.js";
import { mergeSources, type MergeSource } from "../imagetools/index.js";
import { encodeJSON, isIndexType, MediaType, fromPlatform } from "../oci/index.js";
import type { Descriptor, ImageIndex } from "../oci/index.js";
import { runChecked } from "../process/index.js";

/** type=oci or type=local (checked by the caller; OutputSpec groups them with docker/tar) */
export type FileOutput = Exclude<OutputSpec, { type: "image" }>;

/** One node's answer: its result and the directory holding `<output index>/…`. */
export interface NodeFiles {
  dir: string;
  result: BuildResult;
}

/**
 * Writes output `index` (its position in the nodes' request) from every node's files; returns
 * the merged index of an OCI output.
 */
export async function assembleFileOutput(
  out: FileOutput,
  index: number,
  parts: readonly NodeFiles[],
  tmpRoot: string,
): Promise<Descriptor | undefined> {
  const from = parts.map((p) => ({ dir: join(p.dir, String(index)), result: p.result }));
  if (!("names" in out)) {
    await mkdir(out.dest, { recursive: true });
    for (const p of from) {
      await runChecked("cp", ["-a", "--", `${p.dir}/.`, out.dest], { errorCode: "E_OUTPUT" });
    }
    return undefined;
  }
  const layout = out.tar ? await mkdtemp(join(tmpRoot, "layout-")) : out.dest;
  try {
    const root = await mergeLayouts(from, layout, out.names);
    if (out.tar) {
      if (out.dest !== "-") await mkdir(dirname(out.dest), { recursive: true });
      await pipeline(
        dirToTar(layout),
        out.dest === "-" ? process.stdout : createWriteStream(out.dest),
      );
    }
    return root;
  } finally {
    if (out.tar) await rm(layout, { recursive: true, force: true });
  }
}

async function mergeLayouts(
  parts: { dir: string; result: BuildResult }[],
  dest: string,
  names: readonly string[],
): Promise<Descriptor> {
  const blobs = join(dest, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const sources: MergeSource[] = [];
  for (const p of parts) {
    const src = join(p.dir, "blobs", "sha256");
    for (const f of await readdir(src)) {
      await rm(join(blobs, f), { force: true });
      await link(join(src, f), join(blobs, f)).catch(() => copyFile(join(src, f), join(blobs, f)));
    }
    const top = JSON.parse(await readFile(join(p.dir, "index.json"), "utf8")) as ImageIndex;
    const root = top.manifests[0]!;
    const descriptor: Descriptor = {
      mediaType: root.mediaType,
      digest: root.digest,
      size: root.size,
    };
    if (isIndexType(root.mediaType)) {
      const bytes = await readFile(join(src, root.digest.slice(7)));
      sources.push({
        kind: "index",
        descriptor,
        index: JSON.parse(bytes.toString()) as ImageIndex,
        bytes,
      });
    } else {
      // a one-platform node answers with a bare manifest; its platform comes from the result
      const platform = p.result.platforms[0]?.platform;
      sources.push({
        kind: "manifest",
        descriptor: platform ? { ...descriptor, platform: fromPlatform(platform) } : descriptor,
      });
    }
  }
  const merged = mergeSources(sources);
  await writeFile(join(blobs, merged.descriptor.digest.slice(7)), merged.bytes);
  const root: Descriptor = { ...merged.descriptor };
  const name = names[0];
  if (name) {
    const tag = /:([\w][\w.-]{0,127})$/.exec(name.replace(/@.*$/, ""));
    root.annotations = {
      "io.containerd.image.name": name,
      "org.opencontainers.image.ref.name": tag ? tag[1]! : "latest",
    };
  }
  await writeFile(join(dest, "oci-layout"), encodeJSON({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dest, "index.json"),
    encodeJSON({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [root] }, 2),
  );
  return merged.descriptor;
}
