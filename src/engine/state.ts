/**
 * kiln's state directory: the content store (an OCI layout), snapshots, the build cache,
 * cache mounts and runc's state. One directory so `kiln du`/`prune` see everything. What
 * several kiln processes may change at once (tags, cache records, leases, cache-mount holds)
 * lives in its metadata database (src/metadata/).
 */
import { mkdir, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { BuildCache } from "../cache/index.js";
import { ContentStore } from "../content/index.js";
import { MetadataStore } from "../metadata/index.js";
import { Snapshotter, driverFromEnv } from "../snapshot/index.js";

export function defaultRoot(): string {
  if (process.env.KILN_ROOT) return process.env.KILN_ROOT;
  if (process.getuid?.() === 0) return "/var/lib/kiln";
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "kiln");
}

export interface KilnState {
  root: string;
  metadata: MetadataStore;
  content: ContentStore;
  snapshots: Snapshotter;
  cache: BuildCache;
  /** content hashes of build-context files by identity, a file per context (a cache) */
  contextHashesDir: string;
  /** emulators' successful probes, kept while the host's binfmt_misc setup is unchanged */
  probeRecordFile: string;
  /** persistent `RUN --mount=type=cache` directories */
  cacheMountsDir: string;
  tmpDir: string;
}

export async function openState(root: string = defaultRoot()): Promise<KilnState> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const metadata = MetadataStore.open(root);
  const snapshots = new Snapshotter(join(root, "snapshots"), { driver: driverFromEnv() });
  const state: KilnState = {
    root,
    metadata,
    content: await ContentStore.open(join(root, "content"), metadata),
    snapshots,
    cache: new BuildCache(metadata, (id) => snapshots.exists(id)),
    contextHashesDir: join(root, "cache", "context-hashes"),
    probeRecordFile: join(root, "cache", "emulation-probes.json"),
    cacheMountsDir: join(root, "cache-mounts"),
    tmpDir: join(root, "tmp"),
  };
  for (const d of [state.contextHashesDir, state.cacheMountsDir, state.tmpDir]) {
    await mkdir(d, { recursive: true });
  }
  // the one file all contexts shared before they had one each
  await rm(join(root, "cache", "context-hashes.json"), { force: true });
  return state;
}
