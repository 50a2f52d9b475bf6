/**
 * The attestations of an image in a registry, per platform, in the shape buildx's
 * `imagetools inspect --format '{{json .Provenance}}'` / `'{{json .SBOM}}'` prints: a platform's
 * provenance is `{"SLSA": predicate}`, its SBOM `{"SPDX": predicate, "AdditionalSPDXs": [...]}`
 * (the first SPDX statement, then the others, e.g. the build context's).
 */
import {
  IN_TOTO_MEDIA_TYPE,
  isAttestationManifest,
  PREDICATE_TYPE_ANNOTATION,
  REFERENCE_DIGEST_ANNOTATION,
  SPDX_PREDICATE,
} from "../attest/index.js";
import { KilnError } from "../errors.js";
import { isManifestType } from "../oci/mediatypes.js";
import { toPlatform } from "../oci/platform.js";
import type { Descriptor } from "../oci/types.js";
import { format } from "../platform/index.js";
import { formatRef, type RegistryClient, type RepositoryRef } from "../registry/index.js";
import type { Inspected } from "./inspect.js";

export interface ProvenanceStub {
  SLSA?: unknown;
}

export interface SbomStub {
  SPDX?: unknown;
  AdditionalSPDXs?: unknown[];
}

export interface ImageAttestations {
  /** platforms of the image manifests (`linux/arm64/v8`), sorted */
  platforms: string[];
  provenance: Record<string, ProvenanceStub>;
  sbom: Record<string, SbomStub>;
}

/** Far above any real statement; BuildKit itself limits attestation files to 40 MiB. */
const MAX_STATEMENT = 64 << 20;

async function readStatement(
  client: RegistryClient,
  repo: RepositoryRef,
  d: Descriptor,
): Promise<unknown> {
  if (d.size > MAX_STATEMENT) {
    throw new KilnError(
      "E_MANIFEST_INVALID",
      `attestation ${formatRef(repo, d.digest)} is ${d.size} bytes, more than kiln reads`,
    );
  }
  const chunks: Buffer[] = [];
  for await (const c of client.fetchBlob(repo, d)) chunks.push(c as Buffer);
  try {
    return (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { predicate?: unknown })
      .predicate;
  } catch (e) {
    throw new KilnError(
      "E_MANIFEST_INVALID",
      `attestation ${formatRef(repo, d.digest)} is not an in-toto statement`,
      { cause: e },
    );
  }
}

/** Reads the provenance and SBOM statements of every platform of an index. */
export async function imageAttestations(
  client: RegistryClient,
  img: Inspected,
): Promise<ImageAttestations> {
  const out: ImageAttestations = { platforms: [], provenance: {}, sbom: {} };
  if (img.document.kind !== "index") return out;
  const repo = { registry: img.ref.registry, repository: img.ref.repository };
  const manifests = img.document.index.manifests;
  const images = manifests.filter(
    (d) => isManifestType(d.mediaType) && d.platform !== undefined && !isAttestationManifest(d),
  );
  for (const image of images) {
    const platform = format(toPlatform(image.platform!));
    out.platforms.push(platform);
    const refs = manifests.filter(
      (d) =>
        isAttestationManifest(d) && d.annotations?.[REFERENCE_DIGEST_ANNOTATION] === image.digest,
    );
    for (const r of refs) {
      const m = await client.getManifest(repo, r.digest);
      if (m.document.kind !== "manifest") continue;
      for (const layer of m.document.manifest.layers) {
        if (layer.mediaType !== IN_TOTO_MEDIA_TYPE) continue;
        const type = layer.annotations?.[PREDICATE_TYPE_ANNOTATION] ?? "";
        if (type === SPDX_PREDICATE) {
          const predicate = await readStatement(client, repo, layer);
          const s = (out.sbom[platform] ??= {});
          if (s.SPDX === undefined) s.SPDX = predicate;
          else (s.AdditionalSPDXs ??= []).push(predicate);
        } else if (type.startsWith("https://slsa.dev/provenance/") && !out.provenance[platform]) {
          out.provenance[platform] = { SLSA: await readStatement(client, repo, layer) };
        }
      }
    }
  }
  out.platforms.sort();
  return out;
}

/**
 * What `{{json .Provenance}}` / `{{json .SBOM}}` print: the one platform's stub when the image
 * has a single platform (`{}` when it has none), else the stubs keyed by platform.
 */
export function attestationView(a: ImageAttestations, kind: "provenance" | "sbom"): object {
  const byPlatform = a[kind];
  if (a.platforms.length > 1) return byPlatform;
  return (a.platforms[0] !== undefined ? byPlatform[a.platforms[0]] : undefined) ?? {};
}
