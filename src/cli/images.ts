/**
 * `kiln images` and `kiln push`: the images a build kept in kiln's store (no --push/--output),
 * listed from the store's OCI layout index (`org.opencontainers.image.ref.name` names them),
 * and pushed later from there.
 */
import { Command } from "commander";
import type { ContentStore } from "../content/index.js";
import { refNameAnnotation } from "../content/index.js";
import { openState } from "../engine/state.js";
import { KilnError } from "../errors.js";
import { isIndexType, parseConfig, parseManifestOrIndex, type Descriptor } from "../oci/index.js";
import { formatAll } from "../platform/index.js";
import { toPlatform } from "../oci/index.js";
import { formatBytes } from "../progress/index.js";
import { formatReference, parseReference, registryHost } from "../reference/index.js";
import { RegistryClient, dockerCredentials, pushImage } from "../registry/index.js";
import { isAttestationManifest } from "../attest/index.js";

export interface StoredImage {
  /** the full reference, or undefined for an untagged result */
  name?: string;
  digest: string;
  mediaType: string;
  platforms: string[];
  /** bytes of every distinct blob the image needs (manifests, configs, layers) */
  size: number;
}

/** One stored image's platforms and size, read from its manifests in the store. */
async function describeStored(content: ContentStore, root: Descriptor): Promise<StoredImage> {
  const blobs = new Map<string, number>();
  const platforms: string[] = [];
  const visit = async (desc: Descriptor): Promise<void> => {
    blobs.set(desc.digest, desc.size);
    const doc = parseManifestOrIndex(await content.readBytes(desc.digest), desc.mediaType);
    if (doc.kind === "index") {
      for (const child of doc.index.manifests) await visit(child);
      return;
    }
    for (const d of [doc.manifest.config, ...doc.manifest.layers]) blobs.set(d.digest, d.size);
    // an attestation manifest is part of the image, not one of its platforms
    if (isAttestationManifest(desc)) return;
    if (desc.platform) platforms.push(formatAll(toPlatform(desc.platform)));
    else {
      const config = parseConfig(await content.readBytes(doc.manifest.config.digest));
      platforms.push(
        formatAll({ os: config.os, architecture: config.architecture, variant: config.variant }),
      );
    }
  };
  await visit(root);
  let size = 0;
  for (const s of blobs.values()) size += s;
  return {
    name: root.annotations?.[refNameAnnotation],
    digest: root.digest,
    mediaType: root.mediaType,
    platforms,
    size,
  };
}

/** Every image in the store's index.json that is an image (manifest or index), named first. */
export async function listStoredImages(content: ContentStore): Promise<StoredImage[]> {
  const index = await content.readIndex();
  const out: StoredImage[] = [];
  for (const d of index.manifests) {
    if (!isIndexType(d.mediaType) && !/manifest/.test(d.mediaType)) continue;
    if (!(await content.has(d.digest))) continue; // pruned underneath: not an image any more
    out.push(await describeStored(content, d));
  }
  return out.sort((a, b) =>
    a.name === b.name
      ? 0
      : a.name === undefined
        ? 1
        : b.name === undefined
          ? -1
          : a.name < b.name
            ? -1
            : 1,
  );
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

export function imagesCommand(): Command {
  return new Command("images")
    .description("List the images kept in kiln's store (builds without --push or --output)")
    .option("--json", "print JSON")
    .option("-q, --quiet", "print only digests")
    .action(async (flags: { json?: boolean; quiet?: boolean }) => {
      const state = await openState();
      const images = await listStoredImages(state.content);
      if (flags.json) {
        process.stdout.write(JSON.stringify(images, null, 2) + "\n");
        return;
      }
      if (flags.quiet) {
        for (const i of images) process.stdout.write(`${i.digest}\n`);
        return;
      }
      const rows = [["NAME", "DIGEST", "PLATFORMS", "SIZE"]];
      for (const i of images) {
        rows.push([i.name ?? "<none>", i.digest, i.platforms.join(","), formatBytes(i.size)]);
      }
      process.stdout.write(table(rows) + "\n");
    });
}

export function pushCommand(): Command {
  return new Command("push")
    .description("Push an image from kiln's store to its registry (all its platforms)")
    .argument("<name>", "the image's name as `kiln images` lists it, e.g. registry/app:1")
    .option("--insecure-registry <host>", "allow plain HTTP to this registry (loopback always is)")
    .action(async (name: string, flags: { insecureRegistry?: string }) => {
      const ref = parseReference(name);
      const full = formatReference(ref);
      const state = await openState();
      const index = await state.content.readIndex();
      const root = index.manifests.find((d) => d.annotations?.[refNameAnnotation] === full);
      if (root === undefined) {
        throw new KilnError("E_IMAGE_NOT_FOUND", `no image named ${full} in kiln's store`, {
          hint: "see `kiln images` for the stored names, or build with -t NAME first",
        });
      }
      const host = registryHost(ref);
      const client = new RegistryClient({
        insecureHosts: flags.insecureRegistry ? [flags.insecureRegistry] : [],
        auth: dockerCredentials(),
      });
      try {
        await pushImage(
          client,
          state.content,
          { mediaType: root.mediaType, digest: root.digest, size: root.size },
          { registry: host, repository: ref.repository },
          ref.tag ? [ref.tag] : [],
        );
      } finally {
        client.close();
      }
      process.stdout.write(`${ref.registry}/${ref.repository}@${root.digest}\n`);
    });
}
