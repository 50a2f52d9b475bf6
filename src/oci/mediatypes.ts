/** Media types of the OCI image spec and of Docker's image manifest v2 schema 2. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  ociEmpty: "application/vnd.oci.empty.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerZstd: "application/vnd.docker.image.rootfs.diff.tar.zstd",
  dockerForeignLayerGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

export type Compression = "uncompressed" | "gzip" | "zstd";

const manifestTypes: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.dockerManifest,
]);
const indexTypes: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList]);

export function isManifestType(mediaType: string): boolean {
  return manifestTypes.has(mediaType);
}

export function isIndexType(mediaType: string): boolean {
  return indexTypes.has(mediaType);
}

/** Every manifest-like type a registry may serve; sent in full as `Accept` so no registry falls
 * back to schema 1 (distribution does when the list is incomplete). */
export const manifestAcceptTypes: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

const layerTypes: Readonly<Record<string, Compression>> = {
  [MediaType.ociLayer]: "uncompressed",
  [MediaType.ociLayerGzip]: "gzip",
  [MediaType.ociLayerZstd]: "zstd",
  [MediaType.ociLayerNondistributable]: "uncompressed",
  [MediaType.ociLayerNondistributableGzip]: "gzip",
  [MediaType.ociLayerNondistributableZstd]: "zstd",
  [MediaType.dockerLayer]: "uncompressed",
  [MediaType.dockerLayerGzip]: "gzip",
  [MediaType.dockerLayerZstd]: "zstd",
  [MediaType.dockerForeignLayerGzip]: "gzip",
};

export function isLayerType(mediaType: string): boolean {
  return mediaType in layerTypes;
}

/** The compression a layer media type declares, or undefined if it is not a layer type. */
export function layerCompression(mediaType: string): Compression | undefined {
  return layerTypes[mediaType];
}

/** The layer media type for a compression, in the OCI or the Docker family. */
export function layerMediaType(compression: Compression, family: "oci" | "docker" = "oci"): string {
  if (family === "oci") {
    return {
      uncompressed: MediaType.ociLayer,
      gzip: MediaType.ociLayerGzip,
      zstd: MediaType.ociLayerZstd,
    }[compression];
  }
  return {
    uncompressed: MediaType.dockerLayer,
    gzip: MediaType.dockerLayerGzip,
    zstd: MediaType.dockerLayerZstd,
  }[compression];
}
