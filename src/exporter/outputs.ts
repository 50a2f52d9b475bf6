/**
 * Where an assembled image goes: an OCI layout (directory or tar), a `docker load` tarball,
 * a registry, or the files themselves (local directory or tar). Blobs come from the content
 * store by digest; nothing is recompressed.
 */
import { createWriteStream } from "node:fs";
import { copyFile, link, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { encodeTar, type TarInput } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import { KilnError } from "../errors.js";
import { encodeJSON, MediaType, setAnnotations, type Descriptor } from "../oci/index.js";
import type { AssembledImage } from "./image.js";

/** Every blob an image needs, index first: manifests, configs, layers. */
export function blobsOf(img: AssembledImage): Descriptor[] {
  const out = new Map<string, Descriptor>();
  if (!isSingleManifest(img)) out.set(img.indexDesc.digest, img.indexDesc);
  for (const p of img.platforms) {
    out.set(p.manifestDesc.digest, p.manifestDesc);
    out.set(p.configDesc.digest, p.configDesc);
    for (const l of p.manifest.layers) out.set(l.digest, l);
  }
  for (const a of img.attestations) {
    out.set(a.descriptor.digest, a.descriptor);
    out.set(a.manifest.config.digest, a.manifest.config);
    for (const l of a.manifest.layers) out.set(l.digest, l);
  }
  return [...out.values()];
}

/** One platform and no attestations: the manifest itself is the image, without an index. */
export function isSingleManifest(img: AssembledImage): boolean {
  return img.platforms.length === 1 && img.attestations.length === 0;
}

/**
 * The top descriptor of a build: the index for several platforms, else the one manifest; it
 * carries the `index-descriptor` annotations.
 */
export function rootDescriptor(img: AssembledImage): Descriptor {
  let desc: Descriptor;
  if (isSingleManifest(img)) {
    desc = { ...img.platforms[0]!.manifestDesc };
    delete desc.platform;
  } else desc = { ...img.indexDesc };
  return setAnnotations(desc, img.rootAnnotations);
}

function layoutIndex(root: Descriptor, names: readonly string[]): Buffer {
  const annotations: Record<string, string> = { ...root.annotations };
  const name = names[0];
  if (name) {
    annotations["io.containerd.image.name"] = name;
    const tag = /:([\w][\w.-]{0,127})$/.exec(name.replace(/@.*$/, ""));
    annotations["org.opencontainers.image.ref.name"] = tag ? tag[1]! : "latest";
  }
  const desc: Descriptor = Object.keys(annotations).length ? { ...root, annotations } : root;
  return encodeJSON({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [desc] }, 2);
}

const OCI_LAYOUT = encodeJSON({ imageLayoutVersion: "1.0.0" });

/** An OCI image layout directory (`--output type=oci,tar=false,dest=dir`). */
export async function writeOciDir(
  content: ContentStore,
  img: AssembledImage,
  dest: string,
  names: readonly string[],
): Promise<void> {
  const blobDir = join(dest, "blobs", "sha256");
  await mkdir(blobDir, { recursive: true });
  for (const d of blobsOf(img)) {
    const target = join(blobDir, d.digest.slice(7));
    await rm(target, { force: true });
    // a hard link costs nothing when dest is on the store's filesystem; else copy
    await link(content.path(d.digest), target).catch(() =>
      copyFile(content.path(d.digest), target),
    );
  }
  await writeFile(join(dest, "oci-layout"), OCI_LAYOUT);
  await writeFile(join(dest, "index.json"), layoutIndex(rootDescriptor(img), names));
}

function* layoutEntries(
  content: ContentStore,
  img: AssembledImage,
  names: readonly string[],
  docker: boolean,
): Generator<TarInput> {
  const now = 0;
  const file = (name: string, body: Buffer): TarInput => ({
    entry: {
      name,
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: body.length,
      mtime: now,
      xattrs: {},
    },
    body,
  });
  const dir = (name: string): TarInput => ({
    entry: { name, type: "dir", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: now, xattrs: {} },
  });
  yield dir("blobs/");
  yield dir("blobs/sha256/");
  for (const d of blobsOf(img)) {
    yield {
      entry: {
        name: `blobs/sha256/${d.digest.slice(7)}`,
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: d.size,
        mtime: now,
        xattrs: {},
      },
      body: content.openRead(d.digest),
    };
  }
  yield file("oci-layout", OCI_LAYOUT);
  yield file("index.json", layoutIndex(rootDescriptor(img), names));
  if (docker) {
    const p = img.platforms[0]!;
    const manifest = [
      {
        Config: `blobs/sha256/${p.configDesc.digest.slice(7)}`,
        RepoTags: names.map(dockerTag),
        Layers: p.manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      },
    ];
    yield file("manifest.json", Buffer.from(JSON.stringify(manifest)));
  }
}

/** `docker load` shows short names: docker.io/library/x:t → x:t. */
function dockerTag(name: string): string {
  const n = name.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "");
  return /:[\w][\w.-]*$/.test(n.replace(/^[^/]*:\d+\//, "")) ? n : `${n}:latest`;
}

/** An OCI layout or docker-load tarball, to a file or `-` (stdout). */
export async function writeImageTar(
  content: ContentStore,
  img: AssembledImage,
  dest: string,
  names: readonly string[],
  format: "oci" | "docker",
): Promise<void> {
  if (format === "docker" && img.platforms.length > 1) {
    throw new KilnError(
      "E_OUTPUT",
      "docker exporter does not support multi-platform images: a `docker load` tarball holds one platform",
      {
        hint: "build one platform with --platform linux/amd64 for type=docker, or use --output type=oci,dest=image.tar for all platforms",
      },
    );
  }
  if (dest !== "-") await mkdir(dirname(dest), { recursive: true });
  const out = dest === "-" ? process.stdout : createWriteStream(dest);
  await pipeline(
    Readable.from(encodeTar(layoutEntries(content, img, names, format === "docker"))),
    out,
  );
}
