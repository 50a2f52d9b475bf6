/**
 * `kiln imagetools inspect`: the manifest or index a reference names, printed as buildx does:
 * a readable tree, the exact bytes (`--raw`), or JSON with the image configs (`--format json`).
 */
import type { ParsedDocument } from "../oci/parse.js";
import type { Descriptor, ImageConfig } from "../oci/types.js";
import { format } from "../platform/index.js";
import { formatReference, type Reference } from "../reference/index.js";
import { mapLimit, type RegistryClient, type RepositoryRef } from "../registry/index.js";
import { fetchConfig } from "./fetch.js";
import { toPlatform } from "../oci/platform.js";
import { isManifestType } from "../oci/mediatypes.js";
import { isAttestationManifest } from "../attest/index.js";

export interface Inspected {
  ref: Reference;
  descriptor: Descriptor;
  /** Exactly as the registry served them (their sha256 is `descriptor.digest`). */
  bytes: Buffer;
  document: ParsedDocument;
}

/**
 * The JSON of `--format json`, buildx's `{{json .}}`: `name`; `manifest` (for an index:
 * schemaVersion, mediaType, digest, size, manifests, annotations; for a manifest: the document
 * plus its digest and size); `image`: the image config, or, when the index has several
 * platforms, an object of configs keyed by platform (`linux/arm64/v8`). Attestation
 * manifests have no config there.
 */
export interface InspectJSON {
  name: string;
  manifest: Record<string, unknown>;
  image?: ImageConfig | Record<string, ImageConfig>;
}

export async function inspectImage(client: RegistryClient, ref: Reference): Promise<Inspected> {
  const fetched = await client.getManifest(repoOf(ref), ref.digest ?? ref.tag!);
  return { ref, descriptor: fetched.descriptor, bytes: fetched.bytes, document: fetched.document };
}

/** Build the `--format json` object, fetching the child manifests and their configs. */
export async function inspectJSON(client: RegistryClient, img: Inspected): Promise<InspectJSON> {
  const repo = repoOf(img.ref);
  const name = formatReference(img.ref);
  const doc = img.document;
  const size = img.descriptor.size;
  const digest = img.descriptor.digest;
  if (doc.kind === "manifest") {
    const { schemaVersion, mediaType, ...rest } = doc.manifest;
    const manifest = {
      schemaVersion,
      mediaType: mediaType ?? doc.mediaType,
      digest,
      size,
      ...rest,
    };
    const image = await fetchConfig(client, repo, doc.manifest);
    return image === undefined ? { name, manifest } : { name, manifest, image };
  }
  const index = doc.index;
  const manifest: Record<string, unknown> = {
    schemaVersion: index.schemaVersion,
    mediaType: index.mediaType ?? doc.mediaType,
    digest,
    size,
    manifests: index.manifests,
  };
  if (index.annotations !== undefined) manifest.annotations = index.annotations;
  const images = index.manifests.filter(
    (d) => isManifestType(d.mediaType) && d.platform !== undefined && !isAttestationManifest(d),
  );
  const configs = new Array<ImageConfig | undefined>(images.length);
  await mapLimit([...images.keys()], client.maxConcurrency, async (i) => {
    const child = await client.getManifest(repo, images[i]!.digest);
    if (child.document.kind === "manifest")
      configs[i] = await fetchConfig(client, repo, child.document.manifest);
  });
  const byPlatform: Record<string, ImageConfig> = {};
  images.forEach((d, i) => {
    const c = configs[i];
    if (c !== undefined) byPlatform[format(toPlatform(d.platform!))] = c;
  });
  const found = Object.values(byPlatform);
  if (found.length === 0) return { name, manifest };
  return { name, manifest, image: found.length === 1 ? found[0]! : byPlatform };
}

/** The readable tree: Name, MediaType, Digest, then each manifest of an index. */
export function formatInspect(img: Inspected): string {
  const lines = table([
    ["Name:", formatReference(img.ref)],
    ["MediaType:", img.descriptor.mediaType],
    ["Digest:", img.descriptor.digest],
  ]);
  if (img.document.kind === "index") {
    lines.push("", "Manifests:");
    img.document.index.manifests.forEach((m, i) => {
      if (i > 0) lines.push("");
      const rows: [string, string][] = [
        ["Name:", formatReference({ ...img.ref, digest: m.digest })],
        ["MediaType:", m.mediaType],
        ["Size:", String(m.size)],
      ];
      if (m.platform !== undefined) {
        rows.push(["Platform:", format(toPlatform(m.platform))]);
        if (m.platform["os.version"]) rows.push(["OSVersion:", m.platform["os.version"]]);
        if (m.platform["os.features"]?.length)
          rows.push(["OSFeatures:", m.platform["os.features"].join(", ")]);
      }
      if (m.urls?.length) rows.push(["URLs:", m.urls.join(", ")]);
      lines.push(...table(rows, "  "));
      const annotations = Object.entries(m.annotations ?? {}).sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0,
      );
      if (annotations.length > 0) {
        lines.push("  Annotations:");
        lines.push(
          ...table(
            annotations.map(([k, v]) => [`${k}:`, v]),
            "    ",
          ),
        );
      }
    });
  }
  return lines.join("\n") + "\n";
}

/** Two columns, the second aligned one space after the widest first (tabwriter's layout). */
function table(rows: readonly (readonly [string, string])[], indent = ""): string[] {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${indent}${k.padEnd(width)} ${v}`);
}

function repoOf(ref: Reference): RepositoryRef {
  return { registry: ref.registry, repository: ref.repository };
}
