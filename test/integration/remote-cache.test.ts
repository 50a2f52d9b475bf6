// --cache-to / --cache-from through the CLI against a real registry: a build in one state
// exports its cache, a build in an EMPTY state imports it and starts no container for a step
// the cache holds (runc invocations are counted), for registry, local and inline caches;
// mode=max also holds a stage only reached through COPY --from, mode=min does not.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  containerStarts,
  kiln,
  kilnOk,
  named,
  removeTree,
  type RawEvent,
  runcLogger,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
const CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0";

const dockerfile = `FROM ${reg}/base/busybox AS builder
RUN echo built > /art
FROM ${reg}/base/busybox
ARG V=1
RUN echo "$V" > /v
COPY --from=builder /art /art
COPY --link --from=builder /art /linked
`;

/** The image digest of a one-platform build, from its summary event. */
function imageDigest(events: readonly RawEvent[]): string | undefined {
  const summary: (RawEvent & { platforms?: { digest?: string }[] }) | undefined = events.find(
    (e) => e.type === "summary",
  );
  return summary?.platforms?.[0]?.digest;
}

async function skopeoRaw(ref: string): Promise<Record<string, unknown>> {
  const out = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`]);
  return JSON.parse(out) as Record<string, unknown>;
}

test("a cache exported from one state makes an empty state run nothing (registry, local, inline; min vs max)", async () => {
  const dir = await tempDir("remote-cache");
  try {
    const log = join(dir, "runc.log");
    const wrapper = await runcLogger(join(dir, "bin"), log);
    const ctx = await writeContext(join(dir, "ctx"), { Dockerfile: dockerfile });
    // the importing builds run from another checkout of the same files
    const ctxB = await writeContext(join(dir, "ctxB"), { Dockerfile: dockerfile });
    const path = `${wrapper}:${process.env.PATH ?? ""}`;
    const repo = `${reg}/cache-${randomBytes(4).toString("hex")}`;
    let states = 0;
    const build = async (...flags: string[]) => {
      const out = join(dir, `out${++states}`);
      const r = await kilnOk(["build", ...flags, "-o", `type=local,dest=${out}`, "."], {
        root: join(dir, `state${states}`),
        cwd: ctxB,
        path,
      });
      return {
        digest: imageDigest(r.events),
        vs: vertexRecords(r.events),
        starts: await containerStarts(log),
        art: await readFile(join(out, "art"), "utf8"),
        v: await readFile(join(out, "v"), "utf8"),
        warnings: r.events.filter((e) => e.type === "warning"),
      };
    };

    // state A exports every kind of cache (inline in a second, fully cached build that pushes)
    const stateA = { root: join(dir, "stateA"), cwd: ctx, path };
    const a = await kilnOk(
      [
        "build",
        "--cache-to",
        `type=registry,ref=${repo}:max,mode=max,image-manifest=false`,
        "--cache-to",
        `type=registry,ref=${repo}:min,mode=min`,
        "--cache-to",
        `type=local,dest=${join(dir, "local")},mode=max`,
        "-o",
        `type=local,dest=${join(dir, "outA")}`,
        ".",
      ],
      stateA,
    );
    assert.equal(named(vertexRecords(a.events), /RUN /).length, 2);
    assert.equal((await containerStarts(log)).length, 2, "state A ran both RUNs");
    assert.match(imageDigest(a.events) ?? "", /^sha256:/);
    await kilnOk(
      ["build", "--cache-to", "type=inline", "-t", `${repo}:image`, "--push", "."],
      stateA,
    );
    assert.deepEqual(await containerStarts(log), []);

    // BuildKit's layout, read by an independent tool
    const index = await skopeoRaw(`${repo}:max`);
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    const entries = index.manifests as {
      mediaType: string;
      annotations?: Record<string, string>;
    }[];
    assert.equal(entries.filter((m) => m.mediaType === CACHE_CONFIG).length, 1);
    const layers = entries.filter((m) => m.mediaType !== CACHE_CONFIG);
    assert.ok(layers.length >= 3, "base, RUN and COPY layers");
    assert.ok(
      layers.every((l) => l.annotations?.["containerd.io/uncompressed"]?.startsWith("sha256:")),
    );
    const manifest = await skopeoRaw(`${repo}:min`);
    assert.equal(manifest.mediaType, "application/vnd.oci.image.manifest.v1+json");
    assert.equal((manifest.config as { mediaType: string }).mediaType, CACHE_CONFIG);

    for (const from of [
      `${repo}:max`,
      `type=registry,ref=${repo}:min`,
      `type=local,src=${join(dir, "local")}`,
      `${repo}:image`,
    ]) {
      const b = await build("--cache-from", from);
      assert.deepEqual(b.starts, [], `${from}: no container started`);
      assert.ok(
        b.vs.every((v) => v.cached),
        `${from}: every step cached`,
      );
      assert.equal(b.art, "built\n");
      // the same image, layer for layer and in its history, as state A built
      assert.equal(b.digest, imageDigest(a.events), `${from}: image digest`);
      assert.equal(b.v, "1\n");
    }

    // a fully cached build that pushes fetches no layer: they are mounted from the cache's repo
    const pushState = join(dir, "statePush");
    await kilnOk(["build", "--cache-from", `${repo}:max`, "-t", `${repo}:pushed`, "--push", "."], {
      root: pushState,
      cwd: ctxB,
      path,
    });
    assert.deepEqual(await containerStarts(log), [], "the push build started no container");
    // an index: the image and its (default) provenance attestation manifest
    const top = (await skopeoRaw(`${repo}:pushed`)) as {
      manifests: { digest: string; platform?: { os: string } }[];
    };
    const image = top.manifests.find((m) => m.platform?.os !== "unknown")!;
    const pushed = (await skopeoRaw(`${repo}@${image.digest}`)) as {
      layers: { digest: string }[];
    };
    const fetched = new Set(await readdir(join(pushState, "content", "blobs", "sha256")));
    assert.ok(pushed.layers.length >= 3);
    for (const l of pushed.layers) {
      assert.ok(!fetched.has(l.digest.slice(7)), `layer ${l.digest} was not downloaded`);
    }
    // the pushed image is complete (skopeo verifies every blob it copies)
    await run("skopeo", [
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      `docker://${repo}:pushed`,
      `oci:${join(dir, "pushed-copy")}:x`,
    ]);

    // a changed final stage needs the builder stage's result: only mode=max holds it
    const max = await build("--cache-from", `${repo}:max`, "--build-arg", "V=2");
    assert.equal(max.v, "2\n");
    assert.equal(max.starts.length, 1, "only the changed RUN ran");
    assert.ok(named(max.vs, /RUN echo built/)[0]?.cached, "builder stage came from the cache");
    const min = await build("--cache-from", `${repo}:min`, "--build-arg", "V=2");
    assert.equal(min.starts.length, 2, "mode=min: the builder stage ran again");
    assert.equal(named(min.vs, /RUN echo built/)[0]?.starts, 1);

    // the builder stage run again with the same output: the COPY --from steps are found in the
    // cache by the content they read (their content keys are exported beside their cache keys;
    // an inline cache holds the image's bottom layers, which a COPY --link's layer is not)
    for (const [from, copies] of [
      [`${repo}:min`, /COPY /],
      [`${repo}:image`, /COPY --from/],
    ] as const) {
      const rerun = await build("--cache-from", from, "--no-cache-filter", "builder");
      assert.equal(rerun.starts.length, 1, `${from}: only the builder stage's RUN ran`);
      for (const step of named(rerun.vs, copies)) assert.ok(step.cached, `${from}: ${step.name}`);
      assert.equal(rerun.digest, imageDigest(a.events), `${from}: image digest`);
    }
  } finally {
    await removeTree(dir);
  }
});

test("an unreadable --cache-from is a warning; a failed --cache-to fails unless ignore-error=true", async () => {
  const dir = await tempDir("remote-cache-errors");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox\nRUN echo x > /x\n`,
    });
    const opts = { root: join(dir, "state"), cwd: ctx };
    const missing = await kilnOk(
      [
        "build",
        "--cache-from",
        `${reg}/no-such-cache-${randomBytes(4).toString("hex")}:x`,
        "--cache-from",
        `type=local,src=${join(dir, "nothing")}`,
        ".",
      ],
      opts,
    );
    const warnings = missing.events
      .filter((e) => e.type === "warning")
      .map((e) => JSON.stringify(e));
    assert.equal(
      warnings.filter((w) => /cache .* not found/.test(w)).length,
      2,
      warnings.join("\n"),
    );

    // nothing listens on port 1 of the loopback
    const failed = await kiln(
      ["build", "--cache-to", "type=registry,ref=127.0.0.1:1/c:x", "."],
      opts,
    );
    assert.notEqual(failed.code, 0);
    assert.match(failed.messages.join("\n"), /cannot export cache to 127\.0\.0\.1:1\/c:x/);
    await kilnOk(
      ["build", "--cache-to", "type=registry,ref=127.0.0.1:1/c:x,ignore-error=true", "."],
      opts,
    );

    const bad = await kiln(["build", "--cache-to", "type=gha", "."], opts);
    assert.notEqual(bad.code, 0);
    assert.match(bad.messages.join("\n"), /--cache-to.*type=gha is not supported/);
  } finally {
    await removeTree(dir);
  }
});
