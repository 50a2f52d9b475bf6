/** Small reads from a registry shared by create and inspect. */
import { KilnError } from "../errors.js";
import { MediaType } from "../oci/mediatypes.js";
import { parseConfig } from "../oci/parse.js";
import type { Descriptor, ImageConfig, ImageManifest } from "../oci/types.js";
import { formatRef, type RegistryClient, type RepositoryRef } from "../registry/index.js";

/** Far above any real image config; a bigger "config" is not one we should buffer. */
const maxConfigBytes = 8 << 20;
const imageConfigTypes: ReadonlySet<string> = new Set([
  MediaType.ociConfig,
  MediaType.dockerConfig,
]);

/**
 * The image config of a manifest, or undefined when its config is not an image config
 * (artifacts, attestations).
 */
export async function fetchConfig(
  client: RegistryClient,
  repo: RepositoryRef,
  manifest: ImageManifest,
): Promise<ImageConfig | undefined> {
  const desc: Descriptor = manifest.config;
  if (!imageConfigTypes.has(desc.mediaType)) return undefined;
  const subject = formatRef(repo, desc.digest);
  if (desc.size > maxConfigBytes) {
    throw new KilnError(
      "E_MANIFEST_INVALID",
      `image config ${subject} is ${desc.size} bytes, more than kiln reads`,
      { hint: "this is not an image config kiln can use" },
    );
  }
  const chunks: Buffer[] = [];
  // fetchBlob verifies size and digest, so the loop ends within desc.size bytes.
  for await (const c of client.fetchBlob(repo, desc)) chunks.push(c as Buffer);
  return parseConfig(Buffer.concat(chunks), subject);
}
