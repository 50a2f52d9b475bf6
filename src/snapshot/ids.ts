/**
 * Snapshot ids: every id a snapshot (or an active mount) gets is minted here, and its kind is
 * read back from it here only (`kiln du` shows the kind; the Snapshotter flattens long chains
 * into `flat:` snapshots).
 */
import { createHash, randomBytes } from "node:crypto";

/** What made a committed snapshot. */
export type SnapshotKind = "pulled" | "exec" | "file" | "flat" | "other";

const PULLED = "layer-";
const FLAT = "flat:";

/** The snapshot of a pulled image layer: one per chain id, shared by every image using it. */
export function pulledLayerId(chainID: string): string {
  return `${PULLED}${chainID.replace(/^sha256:/, "")}`;
}

/**
 * A fresh id for what a step makes (`purpose` is the op kind for committed layers, or
 * "active"/"view"/"unpack" for mounts that are never committed under that id).
 */
export function stepSnapshotId(purpose: string, key: string): string {
  return `${purpose}-${key.replace(/^sha256:/, "").slice(0, 16)}-${randomBytes(4).toString("hex")}`;
}

/** The flattening of a chain's bottom layers (Snapshotter's answer to mount(2)'s page limit). */
export function flatSnapshotId(prefix: readonly string[]): string {
  return `${FLAT}${createHash("sha256").update(prefix.join("\n")).digest("hex")}`;
}

export function isFlatSnapshot(id: string): boolean {
  return id.startsWith(FLAT);
}

export function snapshotKind(id: string): SnapshotKind {
  if (id.startsWith(PULLED)) return "pulled";
  if (isFlatSnapshot(id)) return "flat";
  if (id.startsWith("exec-")) return "exec";
  if (id.startsWith("file-")) return "file";
  return "other";
}
