/**
 * Pushing layer blobs while the build still runs: a built layer streams to the registry while
 * it is compressed (`whileWritten`), any other blob goes to every registry the build pushes to
 * as soon as it is made, so the push at the end finds them there and only the manifests
 * remain. Best effort: a failure here is left to the final push, which retries and reports it.
 */
import { PassThrough } from "node:stream";
import type { BlobRecord } from "../cache/index.js";
import type { Descriptor } from "../oci/index.js";
import type { BlobTee } from "./layers.js";
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
    for (const repo of this.repos) this.pushes.push(this.push(repo, b));
  }

  /**
   * A blob pushed while it is being written (a layer being compressed), so that its upload ends
   * with its compression rather than starting then: `through` hands the blob's bytes on
   * unchanged and also streams them to the first repository the build pushes to; `finish` with
   * the finished blob completes that upload and pushes the blob to the other repositories, or
   * with undefined (the blob failed) abandons it. An upload the registry refuses is dropped at
   * once, so the blob's writer never waits for it, and the finished blob is then pushed the
   * usual way. Streamed uploads take no lane: a compression must never wait for one.
   */
  whileWritten(): BlobTee {
    const [first, ...others] = this.repos;
    // a chunk of compressed layer is 64 KiB: up to 1 MiB waits for a slower registry
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    const upload = this.client.uploadWhileWritten(first!, body);
    return {
      async *through(blob) {
        let ended = false;
        try {
          for await (const chunk of blob) {
            if (!body.destroyed && !body.write(chunk)) await drainedOrClosed(body);
            yield chunk;
          }
          ended = true;
          if (!body.destroyed) body.end();
        } finally {
          if (!ended) body.destroy();
        }
      },
      finish: (b) => {
        if (b === undefined) {
          body.destroy();
          return;
        }
        if (this.started.has(b.digest)) return;
        this.started.add(b.digest);
        this.pushes.push(
          upload.commit(descriptorOf(b)).catch(() => this.push(first!, b)),
          ...others.map((repo) => this.push(repo, b)),
        );
      },
    };
  }

  /** Pushes a stored blob to one repository (in a lane); failures are left to the final push. */
  private push(repo: RepositoryRef, b: BlobRecord): Promise<unknown> {
    const desc = descriptorOf(b);
    return this.lanes
      .run(async () => {
        // a layer of an imported cache that was never fetched: the final push mounts it
        // from the cache's repository or streams it from there
        if (!(await this.content.has(b.digest))) return;
        await this.client.pushBlob(repo, desc, () => this.content.openRead(b.digest));
      })
      .catch(() => undefined);
  }

  /** Waits for the pushes started so far. */
  async settle(): Promise<void> {
    await Promise.all(this.pushes);
  }
}

/** Resolves once `w` takes more writes, or is closed (its reader gave up). */
function drainedOrClosed(w: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      w.off("drain", done);
      w.off("close", done);
      resolve();
    };
    w.on("drain", done);
    w.on("close", done);
  });
}

/** The descriptor a blob record is pushed under. */
function descriptorOf(b: BlobRecord): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size };
}
