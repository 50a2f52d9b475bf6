/**
 * Pushing layer blobs while the build still runs: each blob goes to every registry the build
 * pushes to as soon as it is made, so the push at the end finds it there (one HEAD) and only
 * the manifests remain. Best effort: a failure here is left to the final push, which retries
 * and reports it.
 */
import type { BlobRecord } from "../cache/index.js";
import type { ContentStore } from "../content/index.js";
import type { OutputSpec } from "../request/index.js";
import { parseReference, registryHost } from "../reference/index.js";
import type { RegistryClient, RepositoryRef } from "../registry/index.js";
import { Lanes } from "../lanes.js";

export class PushAhead {
  private readonly repos: RepositoryRef[];
  private readonly lanes: Lanes;
  private readonly pushes: Promise<unknown>[] = [];
  /** digests already on their way */
  private readonly started = new Set<string>();

  constructor(
    private readonly client: RegistryClient,
    private readonly content: ContentStore,
    outputs: readonly OutputSpec[],
  ) {
    const repos = new Map<string, RepositoryRef>();
    for (const o of outputs) {
      if (o.type !== "image" || !o.push) continue;
      for (const n of o.names) {
        const ref = parseReference(n);
        const repo = { registry: registryHost(ref), repository: ref.repository };
        repos.set(`${repo.registry}/${repo.repository}`, repo);
      }
    }
    this.repos = [...repos.values()];
    this.lanes = new Lanes(client.maxConcurrency);
  }

  /** Whether the build pushes anywhere. */
  get active(): boolean {
    return this.repos.length > 0;
  }

  blob(b: BlobRecord): void {
    // twins (one layer made by several platforms' steps) share one blob: it goes up once
    if (this.started.has(b.digest)) return;
    this.started.add(b.digest);
    for (const repo of this.repos) {
      const desc = { mediaType: b.mediaType, digest: b.digest, size: b.size };
      this.pushes.push(
        this.lanes
          .run(async () => {
            // a layer of an imported cache that was never fetched: the final push mounts it
            // from the cache's repository or streams it from there
            if (!(await this.content.has(b.digest))) return;
            await this.client.pushBlob(repo, desc, () => this.content.openRead(b.digest));
          })
          .catch(() => undefined),
      );
    }
  }

  /** Waits for the pushes started so far. */
  async settle(): Promise<void> {
    await Promise.all(this.pushes);
  }
}
