/**
 * kiln's state directory: the content store (an OCI layout), snapshots, the build cache,
 * cache mounts and runc's state. One directory so `kiln du`/`prune` see everything.
 */
import { mkdir } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { BuildCache } from "../cache/index.js";
import { ContentStore } from "../content/index.js";
import { Snapshotter, driverFromEnv } from "../snapshot/index.js";

export function defaultRoot(): string {
  if (process.env.KILN_ROOT) return process.env.KILN_ROOT;
  if (process.getuid?.() === 0) return "/var/lib/kiln";
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "kiln");
}

export interface KilnState {
  root: string;
  content: ContentStore;
  snapshots: Snapshotter;
  cache: BuildCache;
  /** persistent `RUN --mount=type=cache` directories */
  cacheMountsDir: string;
  tmpDir: string;
}

export async function openState(root: string = defaultRoot()): Promise<KilnState> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const snapshots = new Snapshotter(join(root, "snapshots"), { driver: driverFromEnv() });
  const [content, cache] = await Promise.all([
    ContentStore.open(join(root, "content")),
    BuildCache.open(join(root, "cache"), (id) => snapshots.exists(id)),
  ]);
  const state: KilnState = {
    root,
    content,
    snapshots,
    cache,
    cacheMountsDir: join(root, "cache-mounts"),
    tmpDir: join(root, "tmp"),
  };
  for (const d of [state.cacheMountsDir, state.tmpDir]) {
    await mkdir(d, { recursive: true });
  }
  return state;
}
