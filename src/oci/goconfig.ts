/**
 * An image config as BuildKit's exporter writes it, so equal images give equal config bytes:
 * the frontend reads the base config into Go's image structs (unknown fields such as Docker's
 * `container_config` or `Hostname` are dropped, empty values omitted) and the exporter re-encodes
 * the top level as a map (keys sorted) while nested objects keep the structs' field order.
 */
import type { ContainerConfig, Healthcheck, HistoryEntry, ImageConfig } from "./types.js";

const CONTAINER_KEYS = [
  "User",
  "ExposedPorts",
  "Env",
  "Entrypoint",
  "Cmd",
  "Volumes",
  "WorkingDir",
  "Labels",
  "StopSignal",
  "ArgsEscaped",
  "Healthcheck",
  "OnBuild",
  "Shell",
] as const satisfies readonly (keyof ContainerConfig)[];

const HEALTHCHECK_KEYS = [
  "Test",
  "Interval",
  "Timeout",
  "StartPeriod",
  "StartInterval",
  "Retries",
] as const satisfies readonly (keyof Healthcheck)[];

const HISTORY_KEYS = [
  "created",
  "created_by",
  "author",
  "comment",
  "empty_layer",
] as const satisfies readonly (keyof HistoryEntry)[];

/** Go's `omitempty`: false, 0, "", null and empty arrays or maps are left out. */
function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === "object" && Object.keys(v).length === 0;
}

function pick<T extends object>(src: T, keys: readonly (keyof T)[]): T {
  const out = {} as T;
  for (const k of keys) if (!isEmpty(src[k])) out[k] = src[k];
  return out;
}

/** The config document as Go encodes it: a nil diff_ids slice (an image without layers) is null. */
export type GoImageConfig = Omit<ImageConfig, "rootfs"> & {
  rootfs: { type: string; diff_ids: string[] | null };
};

/**
 * `mapKeys`: keys BuildKit's exporter adds to the config map beside the struct's (the inline
 * build cache), kept in their sorted place.
 */
export function goImageConfig(
  c: ImageConfig,
  mapKeys: Readonly<Record<string, unknown>> = {},
): GoImageConfig {
  const cc = c.config ?? {};
  const config = pick(cc, CONTAINER_KEYS);
  if (cc.Healthcheck && !isEmpty(cc.Healthcheck))
    config.Healthcheck = pick(cc.Healthcheck, HEALTHCHECK_KEYS);
  const top: Record<string, unknown> = {
    architecture: c.architecture,
    author: c.author,
    config,
    created: c.created,
    history: c.history?.map((h) => pick(h, HISTORY_KEYS)),
    os: c.os,
    "os.features": c["os.features"],
    "os.version": c["os.version"],
    // BuildKit appends each layer's diff_id to a nil slice: no layers encode as null
    rootfs: { type: c.rootfs.type, diff_ids: c.rootfs.diff_ids.length ? c.rootfs.diff_ids : null },
    variant: c.variant,
    ...mapKeys,
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(top).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    // rootfs and config are not omitempty in Go (config is a struct, always written)
    if (k === "config" || k === "rootfs" || !isEmpty(v)) out[k] = v;
  }
  return out as unknown as GoImageConfig;
}
