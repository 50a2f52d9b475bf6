// SLSA provenance and SPDX SBOM attestations pushed to a real registry, read back with skopeo
// and checked against BuildKit's storage layout and the in-toto, SLSA and SPDX 2.3 schemas. The
// image is Debian-like: a busybox base plus real dpkg stanzas from this machine's database
// (versions checked against dpkg-query), an npm package and a Python package.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { run } from "../fixtures/exec.js";
import {
  collect,
  kilnOk,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { statementErrors } from "../unit/attest/attest-schema.js";
import { assertSchema, type Descriptor } from "../unit/exporter/layout-check.js";

const reg = testRegistry();
const SECRET = "s3cr3t-value-never-in-attestations";
const TOKEN = "build-arg-token-8472";
const DEBS = ["bash", "coreutils", "libc6", "tzdata"];
let dir = "";
let ctx = "";
const opts = (): { root: string; cwd: string; env: Record<string, string> } => ({
  root: join(dir, "root"),
  cwd: dir,
  env: { API_KEY: SECRET },
});

interface Manifest {
  mediaType: string;
  artifactType?: string;
  config: Descriptor & { data?: string };
  layers: Descriptor[];
  subject?: Descriptor;
}
interface Statement {
  _type: string;
  predicateType: string;
  subject: { name: string; digest: { sha256: string } }[];
  predicate: Record<string, unknown>;
}

/** Raw bytes through skopeo (an independent registry client). */
const raw = (ref: string): Promise<string> =>
  run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`]);

/** A blob straight from the registry's API (skopeo copies images, not single blobs). */
async function blob(repo: string, d: Descriptor): Promise<Buffer> {
  const [host, ...path] = repo.split("/");
  const res = await fetch(`http://${host}/v2/${path.join("/")}/blobs/${d.digest}`);
  assert.equal(res.status, 200);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, d.digest);
  return bytes;
}

/** `kiln imagetools inspect REF --format F`, its stdout as JSON. */
async function inspect(ref: string, format: string): Promise<unknown> {
  const r = await collect(
    await startKiln(["imagetools", "inspect", ref, "--format", format], opts()),
  );
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

before(async () => {
  dir = await tempDir("attestations");
  const status = (await readFile("/var/lib/dpkg/status", "utf8"))
    .split(/\n\n+/)
    .filter((s) => DEBS.some((p) => s.startsWith(`Package: ${p}\n`)));
  assert.equal(status.length, DEBS.length, "the packages are installed on this machine");
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox:latest
ARG TOKEN
ARG BUILDKIT_SBOM_SCAN_CONTEXT
COPY dpkg-status /var/lib/dpkg/status
COPY os-release /etc/os-release
COPY node_modules/ /usr/local/lib/node_modules/
COPY site-packages/ /usr/local/lib/python3.11/site-packages/
RUN --mount=type=secret,id=apikey,env=API_KEY test -n "$API_KEY" && echo "$TOKEN" | wc -c > /token-length
`,
    "dpkg-status": status.join("\n\n") + "\n",
    ".dockerignore": "ignored\n",
    "ignored/node_modules/hidden/package.json": JSON.stringify({
      name: "hidden",
      version: "1.0.0",
    }),
    "os-release": await readFile("/etc/os-release", "utf8"),
    "node_modules/left-pad/package.json": JSON.stringify({
      name: "left-pad",
      version: "1.3.0",
      license: "WTFPL",
    }),
    "site-packages/requests-2.31.0.dist-info/METADATA":
      "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache-2.0\n\nHTTP for Humans.\n",
  });
});
after(() => removeTree(dir));

test("a two-platform push with --sbom and mode=max provenance: BuildKit's storage, valid statements", async () => {
  const repo = `${reg}/attest/full`;
  await kilnOk(
    [
      "build",
      "-q",
      "--platform",
      "linux/amd64,linux/arm64",
      "--sbom=true",
      "--provenance=mode=max",
      "--secret",
      "id=apikey,env=API_KEY",
      "--build-arg",
      `TOKEN=${TOKEN}`,
      "-t",
      `${repo}:1`,
      "--push",
      ctx,
    ],
    opts(),
  );
  const index = JSON.parse(await raw(`${repo}:1`)) as { manifests: Descriptor[] };
  assertSchema("index", index, "the index");
  const images = index.manifests.slice(0, 2);
  const attestations = index.manifests.slice(2);
  assert.deepEqual(
    images.map((d) => `${d.platform?.os}/${d.platform?.architecture}`),
    ["linux/amd64", "linux/arm64"],
  );
  assert.equal(attestations.length, 2, "one attestation manifest per platform, after the images");

  const baseIndexDigest = `sha256:${createHash("sha256")
    .update(await raw(`${reg}/base/busybox:latest`))
    .digest("hex")}`;
  const dpkgVersions = new Map(
    DEBS.map((p) => [
      p,
      execFileSync("dpkg-query", ["-W", "-f", "${Version}", p], { encoding: "utf8" }),
    ]),
  );
  const everything: string[] = [];
  for (const [i, att] of attestations.entries()) {
    const image = images[i]!;
    const platform = `${image.platform!.os}/${image.platform!.architecture}`;
    assert.deepEqual(att.platform, { architecture: "unknown", os: "unknown" });
    assert.deepEqual(att.annotations, {
      "vnd.docker.reference.digest": image.digest,
      "vnd.docker.reference.type": "attestation-manifest",
    });
    const manifestText = await raw(`${repo}@${att.digest}`);
    const manifest = JSON.parse(manifestText) as Manifest;
    assertSchema("manifest", manifest, `attestation manifest of ${platform}`);
    assert.equal(manifest.artifactType, "application/vnd.docker.attestation.manifest.v1+json");
    assert.equal(manifest.config.mediaType, "application/vnd.oci.empty.v1+json");
    assert.deepEqual(manifest.subject, {
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.size,
    });
    assert.deepEqual(
      manifest.layers.map((l) => [l.mediaType, l.annotations?.["in-toto.io/predicate-type"]]),
      [
        ["application/vnd.in-toto+json", "https://spdx.dev/Document"],
        ["application/vnd.in-toto+json", "https://slsa.dev/provenance/v1"],
      ],
    );
    const [sbom, provenance] = await Promise.all(
      manifest.layers.map(async (l) => {
        const text = (await blob(repo, l)).toString("utf8");
        everything.push(text);
        return JSON.parse(text) as Statement;
      }),
    );
    for (const s of [sbom!, provenance!]) {
      assert.equal(statementErrors(s), "", `${s.predicateType} of ${platform}`);
      assert.deepEqual(s.subject, [
        {
          name: `pkg:docker/${reg.replace(":", "%3A")}/attest/full@1?platform=${encodeURIComponent(platform)}`,
          digest: { sha256: image.digest.slice(7) },
        },
      ]);
    }

    const packages = sbom!.predicate.packages as {
      name: string;
      versionInfo?: string;
      externalRefs?: { referenceLocator: string }[];
    }[];
    for (const [name, version] of dpkgVersions) {
      const p = packages.find((x) => x.name === name);
      assert.equal(p?.versionInfo, version, `${name} in the SBOM of ${platform}`);
      assert.match(p.externalRefs![0]!.referenceLocator, new RegExp(`^pkg:deb/debian/${name}@`));
    }
    assert.equal(
      packages.find((x) => x.name === "left-pad")?.externalRefs?.[0]?.referenceLocator,
      "pkg:npm/left-pad@1.3.0",
    );
    assert.equal(
      packages.find((x) => x.name === "requests")?.externalRefs?.[0]?.referenceLocator,
      "pkg:pypi/requests@2.31.0",
    );

    const deps = (
      provenance!.predicate.buildDefinition as {
        resolvedDependencies: { uri: string; digest: { sha256: string } }[];
      }
    ).resolvedDependencies;
    assert.deepEqual(deps, [
      {
        uri: `pkg:docker/${reg.replace(":", "%3A")}/base/busybox@latest?platform=${encodeURIComponent(platform)}`,
        digest: { sha256: baseIndexDigest.slice(7) },
      },
    ]);
    const text = JSON.stringify(provenance!.predicate);
    assert.ok(text.includes(TOKEN), "mode=max records build arguments");
    assert.ok(text.includes('"secrets":[{"id":"apikey"}]'), "mode=max names secrets by id");
  }
  for (const t of everything) assert.ok(!t.includes(SECRET), "a secret's value is never attested");

  // buildx's inspect templates, per platform
  const sbomView = (await inspect(`${repo}:1`, "{{json .SBOM}}")) as Record<
    string,
    { SPDX: { spdxVersion: string } }
  >;
  assert.deepEqual(Object.keys(sbomView).sort(), ["linux/amd64", "linux/arm64"]);
  assert.equal(sbomView["linux/arm64"]!.SPDX.spdxVersion, "SPDX-2.3");
  const provView = (await inspect(`${repo}:1`, "{{json .Provenance}}")) as Record<
    string,
    { SLSA: { buildDefinition: unknown } }
  >;
  assert.ok(provView["linux/amd64"]!.SLSA.buildDefinition);
  const all = (await inspect(`${repo}:1`, "json")) as {
    provenance: unknown;
    sbom: unknown;
    image: Record<string, unknown>;
  };
  assert.deepEqual(all.sbom, sbomView);
  assert.deepEqual(all.provenance, provView);
  assert.deepEqual(Object.keys(all.image).sort(), ["linux/amd64", "linux/arm64"]);
});

test("--provenance=false --sbom=false: no attestation manifests are pushed", async () => {
  const repo = `${reg}/attest/none`;
  await kilnOk(
    [
      "build",
      "-q",
      "--platform",
      "linux/amd64,linux/arm64",
      "--provenance=false",
      "--sbom=false",
      "--secret",
      "id=apikey,env=API_KEY",
      "-t",
      `${repo}:1`,
      "--push",
      ctx,
    ],
    opts(),
  );
  const index = JSON.parse(await raw(`${repo}:1`)) as { manifests: Descriptor[] };
  assert.equal(index.manifests.length, 2);
  for (const d of index.manifests) {
    assert.equal(d.annotations?.["vnd.docker.reference.type"], undefined);
    assert.notEqual(d.platform?.os, "unknown");
  }
});

test("no flags: buildx's default, mode=min provenance only; build args and secrets stay out", async () => {
  const repo = `${reg}/attest/default`;
  await kilnOk(
    [
      "build",
      "-q",
      "--secret",
      "id=apikey,env=API_KEY",
      "--build-arg",
      `TOKEN=${TOKEN}`,
      "-t",
      `${repo}:1`,
      "--push",
      ctx,
    ],
    opts(),
  );
  // one platform, yet an index: the attestation manifest needs one
  const index = JSON.parse(await raw(`${repo}:1`)) as {
    mediaType: string;
    manifests: Descriptor[];
  };
  assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.equal(index.manifests.length, 2);
  const manifest = JSON.parse(await raw(`${repo}@${index.manifests[1]!.digest}`)) as Manifest;
  assert.equal(manifest.layers.length, 1);
  const text = (await blob(repo, manifest.layers[0]!)).toString("utf8");
  const stmt = JSON.parse(text) as Statement;
  assert.equal(statementErrors(stmt), "");
  assert.equal(stmt.predicateType, "https://slsa.dev/provenance/v1");
  assert.ok(!text.includes(TOKEN), "mode=min leaves build arguments out");
  assert.ok(!text.includes(SECRET));
  assert.ok(!text.includes("apikey"), "mode=min leaves secret ids out");
  assert.ok(!text.includes("llbDefinition"), "mode=min has no build steps");
});

test("type=local: the SBOM as sbom.spdx.json whose subjects are the files; inline-only provenance stays out", async () => {
  const out = join(dir, "local-out");
  await kilnOk(
    [
      "build",
      "-q",
      "--sbom=true",
      "--build-arg",
      "BUILDKIT_SBOM_SCAN_CONTEXT=true",
      "--secret",
      "id=apikey,env=API_KEY",
      "-o",
      `type=local,dest=${out}`,
      ctx,
    ],
    opts(),
  );
  const stmt = JSON.parse(await readFile(join(out, "sbom.spdx.json"), "utf8")) as Statement;
  assert.equal(statementErrors(stmt), "");
  const status = stmt.subject.find((s) => s.name === "var/lib/dpkg/status");
  assert.equal(
    status?.digest.sha256,
    createHash("sha256")
      .update(await readFile(join(out, "var/lib/dpkg/status")))
      .digest("hex"),
  );
  await assert.rejects(readFile(join(out, "provenance.json")), { code: "ENOENT" });
  // BUILDKIT_SBOM_SCAN_CONTEXT: the build context's packages, .dockerignore respected
  const context = JSON.parse(
    await readFile(join(out, "sbom-context.spdx.json"), "utf8"),
  ) as Statement;
  assert.equal(statementErrors(context), "");
  const names = (context.predicate.packages as { name: string }[]).map((p) => p.name).sort();
  assert.deepEqual(names, ["context", "left-pad", "requests"]);
});
