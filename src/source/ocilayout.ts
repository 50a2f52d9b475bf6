/**
 * `--build-context NAME=oci-layout://DIR[:TAG][@sha256:…]`: an image read from a local OCI image
 * layout instead of a registry. As buildx: without a digest the tag (default `latest`) is looked
 * up in DIR/index.json (`io.containerd.image.name`, then `org.opencontainers.image.ref.name`),
 * and an index.json with a single entry stands for any tag; a digest may name any blob in the
 * layout. Documents and blobs are read from DIR/blobs and verified against their digests.
 */
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { openVerified, readVerified, type BlobErrors } from "../content/index.js";
import { KilnError, messageOf } from "../errors.js";
import {
  isDigest,
  isIndexType,
  isManifestType,
  parseIndex,
  parseManifestOrIndex,
  type Descriptor,
  type ImageIndex,
} from "../oci/index.js";
import { resolveInRoot } from "../rootpath/index.js";

export const OCI_LAYOUT_CONTEXT = "oci-layout://";

/**
 * The graph's name for the image of an `oci-layout://` context (what its FROM name stands for):
 * `oci-layout://NAME@DIGEST`, as BuildKit names it; the layout itself is found by NAME.
 */
export function layoutImageName(contextName: string, digest: string): string {
  return `${OCI_LAYOUT_CONTEXT}${contextName}@${digest}`;
}

/** The parts of a `layoutImageName`, or undefined for any other name (a registry reference). */
export function parseLayoutImageName(
  name: string,
): { context: string; digest: string } | undefined {
  if (!name.startsWith(OCI_LAYOUT_CONTEXT)) return undefined;
  const rest = name.slice(OCI_LAYOUT_CONTEXT.length);
  const at = rest.lastIndexOf("@");
  if (at < 0) return undefined;
  return { context: rest.slice(0, at), digest: rest.slice(at + 1) };
}

/** What `oci-layout://DIR[:TAG][@DIGEST]` asks for. */
export interface OciLayoutSpec {
  dir: string;
  tag: string;
  digest?: string;
}

const DEFAULT_TAG = "latest";
const CONTAINERD_NAME = "io.containerd.image.name";
const REF_NAME = "org.opencontainers.image.ref.name";
/** a manifest, index or config larger than this is not one (BuildKit reads at most 4 MiB too) */
const MAX_DOCUMENT = 4 << 20;

/** A named context's value as an OCI layout, or undefined when it is something else. */
export function parseOciLayoutContext(value: string): OciLayoutSpec | undefined {
  if (!value.startsWith(OCI_LAYOUT_CONTEXT)) return undefined;
  let rest = value.slice(OCI_LAYOUT_CONTEXT.length);
  // `@digest` and `:tag` end the value (buildx cuts at the first ones; the last ones with no
  // "/" after them also keep a directory that holds "@" or ":" intact)
  let digest: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0 && !rest.includes("/", at)) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const colon = rest.lastIndexOf(":");
  const tagged = colon >= 0 && !rest.includes("/", colon);
  const dir = tagged ? rest.slice(0, colon) : rest;
  const tag = tagged ? rest.slice(colon + 1) : DEFAULT_TAG;
  const usage = "write oci-layout://DIR, oci-layout://DIR:TAG or oci-layout://DIR@sha256:…";
  if (dir === "") {
    throw new KilnError("E_OCI_LAYOUT", `${value}: no layout directory`, { hint: usage });
  }
  if (tag === "") throw new KilnError("E_OCI_LAYOUT", `${value}: empty tag`, { hint: usage });
  if (digest !== undefined && !(isDigest(digest) && digest.startsWith("sha256:"))) {
    throw new KilnError("E_OCI_LAYOUT", `${value}: ${JSON.stringify(digest)} is not a digest`, {
      hint: `${usage}, with a sha256 digest of 64 hex characters`,
    });
  }
  return { dir, tag, digest };
}

/**
 * The index.json entry a tag names: one whose containerd image name, then one whose OCI ref name
 * is the tag; failing that the only entry of a single-entry index (buildx's rules).
 */
export function selectLayoutEntry(index: ImageIndex, tag: string): Descriptor | undefined {
  for (const key of [CONTAINERD_NAME, REF_NAME]) {
    const hit = index.manifests.find((m) => m.annotations?.[key] === tag);
    if (hit) return hit;
  }
  return index.manifests.length === 1 ? index.manifests[0] : undefined;
}

/** The names index.json entries carry, for "unknown tag" messages. */
function layoutTags(index: ImageIndex): string[] {
  return index.manifests.flatMap((m) => {
    const n = m.annotations?.[REF_NAME] ?? m.annotations?.[CONTAINERD_NAME];
    return n === undefined ? [] : [n];
  });
}

/** One named context's OCI layout, with the document its tag or digest resolved to. */
export class OciLayoutSource {
  private constructor(
    /** the context's name (`--build-context NAME=…`) */
    readonly name: string,
    readonly dir: string,
    /** the top document: an index or a single-platform manifest */
    readonly top: { digest: string; mediaType?: string },
    private readonly value: string,
  ) {}

  /** Opens DIR and resolves the tag or digest; every failure names the context and the fix. */
  static async open(name: string, spec: OciLayoutSpec): Promise<OciLayoutSource> {
    const dir = resolve(spec.dir);
    const value = `${OCI_LAYOUT_CONTEXT}${spec.dir}${spec.digest ? `@${spec.digest}` : `:${spec.tag}`}`;
    const what = `build context ${JSON.stringify(name)} (${value})`;
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new KilnError("E_OCI_LAYOUT", `${what}: ${dir} is not a directory`, {
        hint: "point oci-layout:// at an OCI image layout directory (e.g. one written by `kiln build -o type=oci,dest=DIR,tar=false` or `skopeo copy … oci:DIR:TAG`)",
      });
    }
    const indexFile = join(dir, "index.json");
    let index: ImageIndex;
    try {
      index = parseIndex(await readFile(await layoutFile(dir, "index.json")), undefined, indexFile);
    } catch (e) {
      const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
      throw new KilnError(
        "E_OCI_LAYOUT",
        missing
          ? `${what}: ${dir} has no index.json, so it is not an OCI image layout`
          : `${what}: cannot read ${indexFile}: ${messageOf(e)}`,
        {
          hint: "point oci-layout:// at the directory holding oci-layout, index.json and blobs/ (an OCI tar must be unpacked first)",
          cause: e,
        },
      );
    }
    let top: { digest: string; mediaType?: string };
    if (spec.digest !== undefined) {
      const listed = index.manifests.find((m) => m.digest === spec.digest);
      top = { digest: spec.digest, mediaType: listed?.mediaType };
    } else {
      const entry = selectLayoutEntry(index, spec.tag);
      if (!entry) {
        const tags = layoutTags(index);
        throw new KilnError(
          "E_OCI_LAYOUT",
          `${what}: no image tagged ${JSON.stringify(spec.tag)} in ${indexFile} (tags: ${tags.length > 0 ? tags.join(", ") : "none"})`,
          {
            hint: "name one of the layout's tags (oci-layout://DIR:TAG) or its digest (@sha256:…)",
          },
        );
      }
      top = { digest: entry.digest, mediaType: entry.mediaType };
    }
    const source = new OciLayoutSource(name, dir, top, value);
    if (!(await source.has(top.digest))) {
      throw new KilnError("E_OCI_LAYOUT", `${what}: ${top.digest} is not in the layout`, {
        hint: `use a digest listed in ${indexFile} or found under ${join(dir, "blobs", "sha256")}`,
      });
    }
    return source;
  }

  /** How messages name this source. */
  get display(): string {
    return `build context ${JSON.stringify(this.name)} (${this.value})`;
  }

  /** A blob's file; symlinks are followed inside DIR only (a layout uploaded to kilnd is untrusted). */
  private path(digest: string): Promise<string> {
    if (!(isDigest(digest) && digest.startsWith("sha256:"))) {
      throw new KilnError("E_OCI_LAYOUT", `${this.display}: unsupported digest ${digest}`, {
        hint: "kiln reads sha256 layouts",
      });
    }
    return layoutFile(this.dir, `blobs/sha256/${digest.slice("sha256:".length)}`);
  }

  private async has(digest: string): Promise<boolean> {
    return (await stat(await this.path(digest)).catch(() => undefined))?.isFile() === true;
  }

  private errors(digest: string): BlobErrors {
    return {
      unreadable: (e) =>
        new KilnError(
          "E_OCI_LAYOUT",
          (e as NodeJS.ErrnoException).code === "ENOENT"
            ? `${this.display}: blob ${digest} is missing from the layout`
            : `${this.display}: cannot read blob ${digest}: ${messageOf(e)}`,
          {
            hint: "the layout is incomplete: write it again (with every platform's blobs)",
            cause: e,
          },
        ),
      corrupt: (actual) =>
        new KilnError(
          "E_DIGEST_MISMATCH",
          `${this.display}: blob ${digest} is corrupt (its content hashes to ${actual})`,
          { hint: "the layout was modified after it was written: write it again" },
        ),
    };
  }

  /** A manifest, index or config, whole and verified. */
  async readDocument(digest: string): Promise<Buffer> {
    const file = await this.path(digest);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      throw this.errors(digest).unreadable(e);
    }
    if (size > MAX_DOCUMENT) {
      throw new KilnError(
        "E_OCI_LAYOUT",
        `${this.display}: ${digest} is ${size} bytes, too large for a manifest or config`,
        { hint: "name an image manifest or index by its digest" },
      );
    }
    return readVerified(file, digest, this.errors(digest));
  }

  /**
   * What a remote node needs to read this image, as paths relative to DIR: the layout's
   * `oci-layout` and `index.json`, and every blob the top document reaches (all its platforms)
   * that the layout holds — not the layout's other images.
   */
  async files(): Promise<string[]> {
    const out = new Set(["index.json"]);
    if (await stat(join(this.dir, "oci-layout")).catch(() => undefined)) out.add("oci-layout");
    /** false when already taken or not in the layout (a partial copy: the node fails if it needs it) */
    const add = async (digest: string): Promise<boolean> => {
      const rel = `blobs/sha256/${digest.slice("sha256:".length)}`;
      if (out.has(rel) || !(await this.has(digest))) return false;
      out.add(rel);
      return true;
    };
    const visit = async (digest: string, mediaType?: string): Promise<void> => {
      if (!(await add(digest))) return;
      const doc = parseManifestOrIndex(await this.readDocument(digest), mediaType, this.display);
      if (doc.kind === "manifest") {
        for (const d of [doc.manifest.config, ...doc.manifest.layers]) await add(d.digest);
        return;
      }
      for (const m of doc.index.manifests) {
        if (isIndexType(m.mediaType) || isManifestType(m.mediaType))
          await visit(m.digest, m.mediaType);
        else await add(m.digest);
      }
    };
    await visit(this.top.digest, this.top.mediaType);
    return [...out];
  }

  /** A layer (or any blob), streamed and verified as it is read. */
  openBlob(desc: Descriptor): Readable {
    const open = async (): Promise<Readable> =>
      openVerified(await this.path(desc.digest), desc.digest, this.errors(desc.digest));
    return Readable.from(
      (async function* () {
        yield* await open();
      })(),
      { objectMode: false },
    );
  }
}

function layoutFile(dir: string, rel: string): Promise<string> {
  return resolveInRoot(dir, `/${rel}`, { followFinal: true });
}
