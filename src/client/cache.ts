/**
 * `--cache-to` / `--cache-from` on a multi-node builder: each node imports the cache itself and
 * pushes its part of the export by digest; once every platform is built, the parts are merged
 * into one cache under the tag, so one ref serves every platform (buildx leaves one node's).
 */
import { KilnError } from "../errors.js";
import type { BuildRequest, BuildResult } from "../request/index.js";
import type { ProgressSink } from "../progress/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import { RegistryClient, dockerCredentials } from "../registry/index.js";
import { mergeCacheParts, type CacheExportSpec } from "../remotecache/index.js";

/** Refuses caches a node cannot reach (a directory on the client). */
export function checkRemoteCaches(req: BuildRequest): void {
  const local = [...(req.cacheFrom ?? []), ...(req.cacheTo ?? [])].find((s) => s.type === "local");
  if (local) {
    throw new KilnError(
      "E_REMOTE_CACHE",
      "type=local caches are not supported with a remote builder (the nodes cannot reach the directory)",
      { hint: "use a registry cache (--cache-to type=registry,ref=…), or --builder default" },
    );
  }
}

/** The cache exports as a node gets them: registry caches pushed by digest, as parts. */
export function nodeCacheTo(specs: readonly CacheExportSpec[] | undefined): CacheExportSpec[] {
  return (specs ?? []).map((s) => (s.type === "registry" ? { ...s, part: true } : s));
}

/** Merges every node's part of each registry cache into its tag. */
export async function mergeNodeCaches(
  req: BuildRequest,
  results: readonly { result: BuildResult }[],
  sink: ProgressSink,
  step: (id: string, name: string, fn: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const specs = (req.cacheTo ?? []).filter((s) => s.type === "registry");
  if (specs.length === 0) return;
  const insecure = [
    ...req.insecureRegistries,
    ...specs.flatMap((s) => (s.insecure ? [registryHost(parseReference(s.ref))] : [])),
  ];
  const client = new RegistryClient({ insecureHosts: insecure, auth: dockerCredentials() });
  try {
    for (const spec of specs) {
      const digests = results.flatMap((r) =>
        (r.result.cacheParts ?? []).filter((p) => p.ref === spec.ref).map((p) => p.digest),
      );
      if (digests.length === 0) continue;
      await step(
        `remote:cache:${spec.ref}`,
        `merging ${digests.length} node cache(s) into ${spec.ref}`,
        () =>
          mergeCacheParts(client, spec, digests, (message, detail) => {
            sink.write({ type: "warning", message, detail });
          }),
      );
    }
  } finally {
    client.close();
  }
}
