// `kiln imagetools create|inspect` against a real registry of its own (so its access log shows
// exactly what kiln sent), with skopeo pushing the sources and checking the results.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pushBaseImages, type BaseImages } from "../fixtures/base-images.js";
import { collect, startKiln, type KilnResult } from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";
import {
  readAccessLog,
  startRegistry,
  type AccessLogEntry,
  type RunningRegistry,
} from "../fixtures/registry.js";

interface IndexJson {
  mediaType: string;
  manifests: {
    mediaType: string;
    digest: string;
    platform?: { os: string; architecture: string; variant?: string };
    annotations?: Record<string, string>;
  }[];
  annotations?: Record<string, string>;
}

let reg: RunningRegistry;
let images: BaseImages;
let work: string;

const digestOfTag = (tag: string): string =>
  images.platforms.find((p) => p.tag === tag)!.manifestDigest;

async function kiln(...args: string[]): Promise<KilnResult> {
  return collect(await startKiln(["imagetools", ...args], { root: work, cwd: work }));
}

async function kilnOk(...args: string[]): Promise<KilnResult> {
  const r = await kiln(...args);
  assert.equal(r.code, 0, `kiln imagetools ${args.join(" ")}:\n${r.stderr}`);
  return r;
}

async function skopeoRaw(ref: string): Promise<string> {
  return run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${reg.host}/${ref}`]);
}

/** Pushes one platform of the fixture layout with skopeo (optionally as Docker schema 2). */
async function skopeoPush(tag: string, dest: string, format?: "v2s2"): Promise<void> {
  await run("skopeo", [
    "copy",
    "--quiet",
    "--dest-tls-verify=false",
    ...(format ? ["--format", format] : []),
    `oci:${images.layoutDir}:${tag}`,
    `docker://${reg.host}/${dest}`,
  ]);
}

/** The requests served since `mark` (an earlier log length). */
async function logSince(mark: number): Promise<AccessLogEntry[]> {
  return (await readAccessLog(reg.logFile)).slice(mark);
}

const logLength = async (): Promise<number> => (await readAccessLog(reg.logFile)).length;

function platformOf(m: IndexJson["manifests"][number]): string {
  const p = m.platform!;
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "kiln-imagetools-"));
  reg = await startRegistry();
  images = await pushBaseImages(reg.host);
  await Promise.all([
    skopeoPush("amd64", "src/amd64:1"),
    skopeoPush("arm64", "src/arm64:1"),
    skopeoPush("s390x", "src/docker-s390x:1", "v2s2"),
    skopeoPush("ppc64le", "src/docker-ppc64le:1", "v2s2"),
  ]);
});

after(async () => {
  await reg.stop();
  await rm(work, { recursive: true, force: true });
});

describe("kiln imagetools create", () => {
  test("merges two single-platform images into one OCI index under every tag, mounting the blobs", async () => {
    const mark = await logLength();
    const r = await kilnOk(
      "create",
      "-t",
      `${reg.host}/app/merged:1`,
      "-t",
      `${reg.host}/app/merged:latest`,
      `${reg.host}/src/amd64:1`,
      `${reg.host}/src/arm64:1`,
    );
    const raw = await skopeoRaw("app/merged:1");
    assert.equal(await skopeoRaw("app/merged:latest"), raw);
    assert.equal(
      r.stdout.trim(),
      `sha256:${createHash("sha256").update(raw).digest("hex")}`,
      "kiln prints the digest of what it pushed",
    );
    const index = JSON.parse(raw) as IndexJson;
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, platformOf(m)]),
      [
        [digestOfTag("amd64"), "linux/amd64"],
        [digestOfTag("arm64"), "linux/arm64"],
      ],
    );

    const log = (await logSince(mark)).filter((e) => e.path.startsWith("/v2/app/merged/"));
    const mounts = log.filter((e) => e.method === "POST" && e.path.includes("?mount="));
    // Each image has one config and one layer, each mounted from its own source repository.
    assert.equal(mounts.length, 4, JSON.stringify(log, null, 1));
    assert.ok(mounts.every((e) => e.status === 201));
    assert.ok(mounts.some((e) => e.path.includes("from=src%2Famd64")));
    assert.ok(mounts.some((e) => e.path.includes("from=src%2Farm64")));
    const uploads = log.filter(
      (e) => e.method === "PATCH" || (e.method === "PUT" && e.path.includes("/blobs/")),
    );
    assert.deepEqual(uploads, [], "no blob data was uploaded");

    // The mounted blobs are really there: a full pull of the new index works.
    await run("skopeo", [
      "copy",
      "--quiet",
      "--all",
      "--src-tls-verify=false",
      `docker://${reg.host}/app/merged:1`,
      `oci:${join(work, "pulled")}:x`,
    ]);
  });

  test("--dry-run prints the index and sends nothing that writes", async () => {
    const mark = await logLength();
    const r = await kilnOk(
      "create",
      "--dry-run",
      "-t",
      `${reg.host}/app/dry:1`,
      `${reg.host}/src/amd64:1`,
      `${reg.host}/src/arm64:1`,
    );
    const index = JSON.parse(r.stdout) as IndexJson;
    assert.deepEqual(
      index.manifests.map((m) => m.digest),
      [digestOfTag("amd64"), digestOfTag("arm64")],
    );
    const writes = (await logSince(mark)).filter((e) => !["GET", "HEAD"].includes(e.method));
    assert.deepEqual(writes, []);
    await assert.rejects(skopeoRaw("app/dry:1"));
  });

  test("--append adds the sources after the manifests of the existing index", async () => {
    await kilnOk("create", "-t", `${reg.host}/app/grow:1`, `${reg.host}/src/amd64:1`);
    await kilnOk(
      "create",
      "--append",
      "-t",
      `${reg.host}/app/grow:1`,
      `${reg.host}/src/arm64:1`,
      // Already listed: de-duplicated, not added twice.
      `${reg.host}/src/amd64:1`,
    );
    const index = JSON.parse(await skopeoRaw("app/grow:1")) as IndexJson;
    assert.deepEqual(index.manifests.map(platformOf), ["linux/amd64", "linux/arm64"]);
  });

  test("a lone index source is copied byte for byte, children included", async () => {
    const r = await kilnOk(
      "create",
      "-t",
      `${reg.host}/app/copy:1`,
      `${reg.host}/base/busybox:latest`,
    );
    assert.equal(r.stdout.trim(), images.indexDigest);
    const raw = await skopeoRaw("app/copy:1");
    assert.equal(`sha256:${createHash("sha256").update(raw).digest("hex")}`, images.indexDigest);
    const child = JSON.parse(await skopeoRaw(`app/copy@${digestOfTag("riscv64")}`)) as {
      layers: unknown[];
    };
    assert.equal(child.layers.length, 1);
  });

  test("Docker schema 2 sources give a Docker manifest list", async () => {
    await kilnOk(
      "create",
      "-t",
      `${reg.host}/app/docker:1`,
      `${reg.host}/src/docker-s390x:1`,
      `${reg.host}/src/docker-ppc64le:1`,
    );
    const index = JSON.parse(await skopeoRaw("app/docker:1")) as IndexJson;
    assert.equal(index.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
    assert.deepEqual(index.manifests.map(platformOf), ["linux/s390x", "linux/ppc64le"]);
    assert.ok(
      index.manifests.every(
        (m) => m.mediaType === "application/vnd.docker.distribution.manifest.v2+json",
      ),
    );
  });

  test("--platform filters an index, --annotation annotates the result, bare digests name the target repository", async () => {
    await kilnOk(
      "create",
      "-t",
      `${reg.host}/base/busybox:picked`,
      "-p",
      "linux/arm64,linux/riscv64",
      "--annotation",
      "index:org.opencontainers.image.description=two platforms",
      "--annotation",
      "manifest-descriptor[linux/riscv64]:note=rv",
      `${reg.host}/base/busybox:latest`,
      // A bare digest: the ppc64le image in base/busybox, the target repository.
      digestOfTag("ppc64le"),
    );
    const index = JSON.parse(await skopeoRaw("base/busybox:picked")) as IndexJson;
    assert.deepEqual(index.manifests.map(platformOf), ["linux/arm64/v8", "linux/riscv64"]);
    assert.deepEqual(index.annotations, {
      "org.opencontainers.image.description": "two platforms",
    });
    assert.deepEqual(index.manifests[1]!.annotations, { note: "rv" });
    assert.equal(index.manifests[0]!.annotations, undefined);
  });

  test("errors are one line with a hint: a missing source, another registry, --append to nothing", async () => {
    const missing = await kiln("create", "-t", `${reg.host}/app/x:1`, `${reg.host}/src/nope:1`);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: .*src\/nope:1 not found.*\nhint: .+\n$/);

    const foreign = await kiln(
      "create",
      "-t",
      `${reg.host}/app/x:1`,
      `${reg.host}/src/amd64:1`,
      "registry.example.com/app:arm64",
    );
    assert.equal(foreign.code, 1);
    assert.match(
      foreign.stderr,
      /^error: .*different registries.*not supported\nhint: .*mounts blobs/,
    );

    const append = await kiln(
      "create",
      "--append",
      "-t",
      `${reg.host}/app/new:1`,
      `${reg.host}/src/amd64:1`,
    );
    assert.equal(append.code, 1);
    assert.match(
      append.stderr,
      /^error: --append: .*app\/new:1 does not exist yet\nhint: drop --append/,
    );
  });
});

describe("kiln imagetools inspect", () => {
  test("an index: every manifest with its platform and size", async () => {
    const r = await kilnOk("inspect", `${reg.host}/base/busybox:latest`);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], `Name:      ${reg.host}/base/busybox:latest`);
    assert.equal(lines[1], "MediaType: application/vnd.oci.image.index.v1+json");
    assert.equal(lines[2], `Digest:    ${images.indexDigest}`);
    const platforms = lines
      .filter((l) => l.startsWith("  Platform:"))
      .map((l) => l.split(/\s+/)[2]);
    assert.deepEqual(platforms, [
      "linux/amd64",
      "linux/arm64/v8",
      "linux/arm/v7",
      "linux/ppc64le",
      "linux/s390x",
      "linux/riscv64",
    ]);
    assert.ok(
      lines.includes(`  Name:      ${reg.host}/base/busybox:latest@${digestOfTag("s390x")}`),
    );
    assert.equal(lines.filter((l) => /^ {2}Size: +\d+$/.test(l)).length, 6);
  });

  test("what skopeo pushed, inspect shows with skopeo's digest; --raw prints the exact bytes", async () => {
    const skopeo = JSON.parse(
      await run("skopeo", [
        "inspect",
        "--tls-verify=false",
        `docker://${reg.host}/src/docker-s390x:1`,
      ]),
    ) as { Digest: string };
    const r = await kilnOk("inspect", `${reg.host}/src/docker-s390x:1`);
    assert.equal(
      r.stdout,
      `Name:      ${reg.host}/src/docker-s390x:1\n` +
        "MediaType: application/vnd.docker.distribution.manifest.v2+json\n" +
        `Digest:    ${skopeo.Digest}\n`,
    );
    const raw = await kilnOk("inspect", "--raw", `${reg.host}/src/docker-s390x:1`);
    assert.equal(raw.stdout, await skopeoRaw("src/docker-s390x:1"));
    assert.equal(`sha256:${createHash("sha256").update(raw.stdout).digest("hex")}`, skopeo.Digest);
  });

  test("--format json: the index and the config of each platform", async () => {
    const r = await kilnOk("inspect", "--format", "json", `${reg.host}/app/merged:1`);
    const j = JSON.parse(r.stdout) as {
      name: string;
      manifest: { digest: string; manifests: unknown[] };
      image: Record<string, { architecture: string; os: string }>;
    };
    assert.equal(j.name, `${reg.host}/app/merged:1`);
    assert.equal(j.manifest.manifests.length, 2);
    assert.deepEqual(Object.keys(j.image), ["linux/amd64", "linux/arm64"]);
    assert.equal(j.image["linux/arm64"]!.architecture, "arm64");
  });

  test("--format json of a single manifest: its config is the image", async () => {
    const r = await kilnOk("inspect", "--format", "json", `${reg.host}/src/amd64:1`);
    const j = JSON.parse(r.stdout) as {
      manifest: { digest: string; layers: unknown[] };
      image: { architecture: string; rootfs: { diff_ids: string[] } };
    };
    assert.equal(j.manifest.digest, digestOfTag("amd64"));
    assert.equal(j.manifest.layers.length, 1);
    assert.equal(j.image.architecture, "amd64");
    assert.equal(j.image.rootfs.diff_ids.length, 1);
  });
});
