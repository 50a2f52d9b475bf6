/**
 * The upload of a remote build: the build context filtered by its .dockerignore, the Dockerfile
 * (with the ignore rules that applied, so the node computes the same cache keys) and the named
 * contexts, as one tar stream read from disk while it is sent.
 */
import { constants } from "node:fs";
import { lstat, open, readdir, readlink } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Readable } from "node:stream";
import { packTar, type TarEntry, type TarInput } from "../archive/index.js";
import { loadContextFilter, type ContextFilter } from "../context/index.js";
import { TAR_CONTEXT, TAR_DOCKERFILE, TAR_NAMED } from "../daemon/index.js";
import { imageContextRef } from "../request/index.js";
import type { OciLayoutSource } from "../source/index.js";

export interface UploadSpec {
  contextDir: string;
  /** absolute path of the Dockerfile */
  dockerfile: string;
  namedContexts: Record<string, string>;
  /** the `oci-layout://` contexts among them, opened: only what their image needs is sent */
  layouts?: ReadonlyMap<string, OciLayoutSource>;
}

/** The tar for one node; call again for each node (it streams from disk). */
export function packUpload(spec: UploadSpec): Readable {
  return packTar(members(spec));
}

async function* members(spec: UploadSpec): AsyncGenerator<TarInput> {
  const filter = await loadContextFilter(spec.contextDir, spec.dockerfile);
  yield* tree(spec.contextDir, TAR_CONTEXT, filter);
  const name = basename(spec.dockerfile);
  yield dirEntry(TAR_DOCKERFILE);
  yield* file(spec.dockerfile, `${TAR_DOCKERFILE}/${name}`);
  const rules = Buffer.from(filter.patterns.map((p) => `${p}\n`).join(""));
  yield {
    entry: { ...fileEntry(`${TAR_DOCKERFILE}/${name}.dockerignore`), size: rules.length },
    body: rules,
  };
  yield dirEntry(TAR_NAMED);
  for (const [n, dir] of Object.entries(spec.namedContexts)) {
    // docker-image:// contexts are references, resolved by the node, not files to upload
    if (imageContextRef(dir) !== undefined) continue;
    const layout = spec.layouts?.get(n);
    if (layout) yield* layoutFiles(layout, `${TAR_NAMED}/${n}`);
    else yield* tree(dir, `${TAR_NAMED}/${n}`, await loadContextFilter(dir));
  }
}

/** An oci-layout:// context as a layout holding its image's blobs; the node reads it there. */
async function* layoutFiles(layout: OciLayoutSource, prefix: string): AsyncGenerator<TarInput> {
  yield dirEntry(prefix);
  yield dirEntry(`${prefix}/blobs`);
  yield dirEntry(`${prefix}/blobs/sha256`);
  for (const rel of await layout.files()) yield* file(join(layout.dir, rel), `${prefix}/${rel}`);
}

function dirEntry(name: string, mode = 0o755, mtime = 0): TarInput {
  return { entry: { ...fileEntry(`${name}/`), type: "dir", mode, mtime } };
}

function fileEntry(name: string): TarEntry {
  return { name, type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, xattrs: {} };
}

async function* file(path: string, name: string): AsyncGenerator<TarInput> {
  const fh = await open(path, constants.O_RDONLY);
  const st = await fh.stat();
  yield {
    entry: {
      ...fileEntry(name),
      mode: st.mode & 0o7777,
      size: st.size,
      mtime: Math.floor(st.mtimeMs / 1000),
    },
    body: fh.createReadStream(),
  };
}

/** A directory, minus what the filter excludes; owners are kept, as a local build sees them. */
async function* tree(
  root: string,
  prefix: string,
  filter: ContextFilter,
): AsyncGenerator<TarInput> {
  const st = await lstat(root);
  yield dirEntry(prefix, st.mode & 0o7777, Math.floor(st.mtimeMs / 1000));
  // With a `!` rule an excluded directory may still hold included files: walk into it.
  const reincludes = filter.patterns.some((p) => p.startsWith("!"));
  async function* visit(rel: string): AsyncGenerator<TarInput> {
    const names = (await readdir(rel === "" ? root : join(root, rel))).sort();
    for (const n of names) {
      const r = rel === "" ? n : `${rel}/${n}`;
      const abs = join(root, r);
      const s = await lstat(abs);
      const excluded = filter.excluded(r);
      const base: TarEntry = {
        ...fileEntry(`${prefix}/${r}`),
        mode: s.mode & 0o7777,
        uid: s.uid,
        gid: s.gid,
        mtime: Math.floor(s.mtimeMs / 1000),
      };
      if (s.isDirectory()) {
        if (excluded && !reincludes) continue;
        if (!excluded) yield { entry: { ...base, name: `${base.name}/`, type: "dir" } };
        yield* visit(r);
      } else if (excluded) {
        continue;
      } else if (s.isFile()) {
        const fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
        yield { entry: { ...base, size: s.size }, body: fh.createReadStream() };
      } else if (s.isSymbolicLink()) {
        yield { entry: { ...base, type: "symlink", linkname: await readlink(abs) } };
      }
      // sockets, fifos and devices are not part of a build context
    }
  }
  yield* visit("");
}
