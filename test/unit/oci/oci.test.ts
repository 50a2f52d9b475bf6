import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { KilnError } from "../../../src/errors.js";
import {
  MediaType,
  appendHistory,
  appendManifests,
  describe as describeBytes,
  digestOf,
  emptyConfig,
  emptyDescriptor,
  emptyIndex,
  encodeJSON,
  fromPlatform,
  isDigest,
  isIndexType,
  isManifestType,
  layerCompression,
  layerMediaType,
  manifestFor,
  parseConfig,
  parseIndex,
  parseManifest,
  parseManifestOrIndex,
  setAnnotations,
  toBlob,
  toPlatform,
  withPlatform,
} from "../../../src/oci/index.js";
import { schemaErrors } from "./oci-schema.js";

const layerBytes = Buffer.from("layer");
const layer = describeBytes(layerBytes, MediaType.ociLayerGzip);

function sampleImage(arch: string, variant?: string) {
  let config = emptyConfig({ os: "linux", architecture: arch, variant });
  config = appendHistory(config, { created_by: "COPY . /" }, digestOf(Buffer.from("diff")));
  config = appendHistory(config, { created_by: 'CMD ["sh"]' });
  const c = toBlob(config, MediaType.ociConfig, 0);
  const manifest = manifestFor(c.descriptor, [layer]);
  return { config, configBlob: c, manifest, manifestBlob: toBlob(manifest, MediaType.ociManifest) };
}

test("media type classification", () => {
  assert.ok(isManifestType(MediaType.dockerManifest));
  assert.ok(isManifestType(MediaType.ociManifest));
  assert.ok(!isManifestType(MediaType.ociIndex));
  assert.ok(isIndexType(MediaType.dockerManifestList));
  assert.equal(layerCompression(MediaType.dockerLayerGzip), "gzip");
  assert.equal(layerCompression(MediaType.ociLayerZstd), "zstd");
  assert.equal(layerCompression(MediaType.ociLayer), "uncompressed");
  assert.equal(layerCompression(MediaType.ociConfig), undefined);
  assert.equal(layerMediaType("zstd"), MediaType.ociLayerZstd);
  assert.equal(layerMediaType("gzip", "docker"), MediaType.dockerLayerGzip);
});

test("digestOf hashes the exact bytes; encodeJSON is deterministic and documented", () => {
  const bytes = Buffer.from("hello");
  assert.equal(digestOf(bytes), `sha256:${createHash("sha256").update(bytes).digest("hex")}`);
  assert.equal(encodeJSON({ b: 1, a: [1, 2] }).toString(), '{"b":1,"a":[1,2]}');
  assert.equal(encodeJSON({ b: 1, u: undefined }, 2).toString(), '{\n  "b": 1\n}');
  const { bytes: b2, descriptor } = toBlob({ x: 1 }, "application/json");
  assert.equal(descriptor.digest, digestOf(b2));
  assert.equal(descriptor.size, b2.byteLength);
});

test("empty descriptor matches the bytes {}", () => {
  assert.equal(emptyDescriptor.digest, digestOf(Buffer.from("{}")));
  assert.equal(Buffer.from(emptyDescriptor.data!, "base64").toString(), "{}");
  assert.equal(schemaErrors("descriptor", emptyDescriptor), "");
});

test("isDigest", () => {
  assert.ok(isDigest(`sha256:${"a".repeat(64)}`));
  assert.ok(!isDigest(`sha256:${"A".repeat(64)}`));
  assert.ok(!isDigest("sha256:abc"));
  assert.ok(!isDigest("nope"));
  assert.ok(isDigest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"));
});

test("platform converters round-trip and drop empty fields", () => {
  const p = {
    os: "windows",
    architecture: "amd64",
    osVersion: "10.0.17763.1",
    osFeatures: ["win32k"],
  };
  const oci = fromPlatform(p);
  assert.deepEqual(oci, {
    architecture: "amd64",
    os: "windows",
    "os.version": "10.0.17763.1",
    "os.features": ["win32k"],
  });
  assert.deepEqual(toPlatform(oci), p);
  assert.deepEqual(toPlatform({ os: "linux", architecture: "arm", variant: "" }), {
    os: "linux",
    architecture: "arm",
  });
  assert.deepEqual(fromPlatform({ os: "linux", architecture: "arm64", variant: "v8" }), {
    architecture: "arm64",
    os: "linux",
    variant: "v8",
  });
});

test("builders are pure and produce schema-valid documents", () => {
  const amd = sampleImage("amd64");
  const arm = sampleImage("arm", "v7");
  assert.equal(schemaErrors("config", amd.config), "");
  assert.deepEqual(amd.config.rootfs.diff_ids, [digestOf(Buffer.from("diff"))]);
  assert.deepEqual(
    amd.config.history?.map((h) => h.empty_layer),
    [undefined, true],
  );
  assert.equal(schemaErrors("manifest", amd.manifest), "");
  assert.deepEqual(Object.keys(amd.manifest), ["schemaVersion", "mediaType", "config", "layers"]);

  const seed = emptyIndex();
  const index = appendManifests(seed, [
    withPlatform(amd.manifestBlob.descriptor, { os: "linux", architecture: "amd64" }),
    withPlatform(arm.manifestBlob.descriptor, { os: "linux", architecture: "arm", variant: "v7" }),
  ]);
  assert.equal(seed.manifests.length, 0, "input not mutated");
  assert.equal(index.manifests.length, 2);
  assert.equal(schemaErrors("index", index), "");

  const annotated = setAnnotations(index, {
    "org.opencontainers.image.source": "https://x",
    gone: undefined,
  });
  assert.equal(index.annotations, undefined);
  assert.deepEqual(annotated.annotations, { "org.opencontainers.image.source": "https://x" });
  assert.equal(
    setAnnotations(annotated, { "org.opencontainers.image.source": undefined }).annotations,
    undefined,
  );
  assert.equal(schemaErrors("index", annotated), "");

  // Same inputs, same bytes.
  assert.deepEqual(
    toBlob(index, MediaType.ociIndex).bytes,
    toBlob(appendManifests(emptyIndex(), index.manifests), MediaType.ociIndex).bytes,
  );
});

test("artifact manifest with empty config and subject validates", () => {
  const subject = sampleImage("amd64").manifestBlob.descriptor;
  const m = manifestFor(
    emptyDescriptor,
    [describeBytes(Buffer.from("{}"), "application/vnd.in-toto+json")],
    {
      artifactType: "application/vnd.docker.attestation.manifest.v1+json",
      subject,
    },
  );
  assert.equal(schemaErrors("manifest", m), "");
  const parsed = parseManifest(toBlob(m, MediaType.ociManifest).bytes, MediaType.ociManifest);
  assert.deepEqual(parsed.subject, subject);
});

test("parsers accept what the builders make", () => {
  const { manifestBlob, configBlob, manifest, config } = sampleImage("arm64");
  assert.deepEqual(parseManifest(manifestBlob.bytes, MediaType.ociManifest), manifest);
  assert.deepEqual(parseConfig(configBlob.bytes), config);
  const idx = appendManifests(emptyIndex(MediaType.dockerManifestList), [manifestBlob.descriptor]);
  const bytes = toBlob(idx, MediaType.dockerManifestList).bytes;
  assert.deepEqual(parseIndex(bytes, MediaType.dockerManifestList), idx);
  assert.equal(parseManifestOrIndex(bytes).kind, "index");
  assert.equal(parseManifestOrIndex(manifestBlob.bytes).kind, "manifest");
  // A Docker manifest without a mediaType member is still recognised by its shape.
  const bare = Buffer.from(
    JSON.stringify({ schemaVersion: 2, config: configBlob.descriptor, layers: [] }),
  );
  assert.equal(parseManifestOrIndex(bare).kind, "manifest");
});

function assertInvalid(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KilnError, `expected KilnError, got ${String(e)}`);
    assert.equal(e.code, "E_MANIFEST_INVALID");
    assert.match(e.message, pattern);
    assert.ok(e.hint);
    return true;
  });
}

test("parsers reject malformed documents with E_MANIFEST_INVALID naming what is wrong", () => {
  const { manifest } = sampleImage("amd64");
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
  assertInvalid(
    () => parseManifest(Buffer.from("{not json"), undefined, "reg/app:1"),
    /image manifest reg\/app:1: not JSON/,
  );
  assertInvalid(() => parseManifest(enc([1, 2])), /expected an object, got an array/);
  assertInvalid(
    () => parseManifest(enc({ ...manifest, schemaVersion: 1 })),
    /schemaVersion: expected 2/,
  );
  assertInvalid(
    () => parseManifest(enc({ ...manifest, layers: "x" })),
    /layers: expected an array/,
  );
  assertInvalid(
    () =>
      parseManifest(enc({ ...manifest, layers: [{ ...manifest.layers[0], digest: "sha256:zz" }] })),
    /layers\[0\]\.digest: not a digest/,
  );
  assertInvalid(
    () => parseManifest(enc({ ...manifest, config: { ...manifest.config, size: -1 } })),
    /config\.size: expected a non-negative integer/,
  );
  assertInvalid(() => parseManifest(enc(manifest), MediaType.dockerManifest), /served as/);
  assertInvalid(() => parseManifest(enc(manifest), MediaType.ociIndex), /unexpected/);
  assertInvalid(
    () => parseIndex(enc({ schemaVersion: 2, manifests: [{ mediaType: 3 }] })),
    /manifests\[0\]\.mediaType/,
  );
  assertInvalid(
    () =>
      parseIndex(
        enc({ schemaVersion: 2, manifests: [{ ...manifest.config, platform: { os: "linux" } }] }),
      ),
    /manifests\[0\]\.platform\.architecture/,
  );
  assertInvalid(() => parseConfig(enc({ os: "linux", architecture: "amd64" })), /rootfs/);
  assertInvalid(
    () =>
      parseConfig(
        enc({
          os: "linux",
          architecture: "amd64",
          rootfs: { type: "layers", diff_ids: [] },
          config: { Env: "A=1" },
        }),
      ),
    /config\.Env/,
  );
  assertInvalid(
    () =>
      parseManifestOrIndex(
        enc({ mediaType: "application/vnd.docker.distribution.manifest.v1+json" }),
      ),
    /unsupported/,
  );
  assertInvalid(() => parseManifestOrIndex(Buffer.from("\u0000")), /not JSON/);
});
