import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { KilnError } from "../../../src/errors.js";
import {
  formatInspect,
  mergeSources,
  parseAnnotation,
  platformFromConfig,
  type MergeSource,
} from "../../../src/imagetools/index.js";
import {
  MediaType,
  digestOf,
  emptyConfig,
  encodeJSON,
  parseManifestOrIndex,
  type Descriptor,
  type ImageIndex,
} from "../../../src/oci/index.js";
import { parseReference } from "../../../src/reference/index.js";

function desc(
  name: string,
  mediaType: string = MediaType.ociManifest,
  extra: Partial<Descriptor> = {},
): Descriptor {
  return { mediaType, digest: digestOf(Buffer.from(name)), size: name.length, ...extra };
}

const amd64 = desc("amd64", MediaType.ociManifest, {
  platform: { architecture: "amd64", os: "linux" },
});
const arm64 = desc("arm64", MediaType.ociManifest, {
  platform: { architecture: "arm64", os: "linux" },
});
const s390x = desc("s390x", MediaType.ociManifest, {
  platform: { architecture: "s390x", os: "linux" },
});

function manifest(d: Descriptor): MergeSource {
  return { kind: "manifest", descriptor: d };
}

function index(
  manifests: Descriptor[],
  mediaType: string = MediaType.ociIndex,
): Extract<MergeSource, { kind: "index" }> {
  const idx: ImageIndex = { schemaVersion: 2, mediaType, manifests };
  const bytes = encodeJSON(idx, 2);
  return {
    kind: "index",
    descriptor: { mediaType, digest: digestOf(bytes), size: bytes.length },
    index: idx,
    bytes,
  };
}

function attestation(of: Descriptor, name: string): Descriptor {
  return desc(name, MediaType.ociManifest, {
    platform: { architecture: "unknown", os: "unknown" },
    annotations: {
      "vnd.docker.reference.type": "attestation-manifest",
      "vnd.docker.reference.digest": of.digest,
    },
  });
}

function parsed(bytes: Buffer): ImageIndex {
  const doc = parseManifestOrIndex(bytes);
  assert.equal(doc.kind, "index");
  return doc.index;
}

describe("mergeSources", () => {
  test("two single-platform manifests become an OCI index, in source order, with an exact descriptor", () => {
    const r = mergeSources([manifest(amd64), manifest(arm64)]);
    assert.equal(r.carbonCopy, false);
    assert.equal(r.descriptor.mediaType, MediaType.ociIndex);
    assert.equal(r.descriptor.digest, digestOf(r.bytes));
    assert.equal(r.descriptor.size, r.bytes.length);
    const idx = parsed(r.bytes);
    assert.deepEqual(
      idx.manifests.map((d) => d.digest),
      [amd64.digest, arm64.digest],
    );
    assert.deepEqual(r.manifests, idx.manifests);
    // Two-space indentation and Go's member order, as buildx writes an index.
    assert.match(r.bytes.toString(), /^\{\n {2}"schemaVersion": 2,\n {2}"mediaType": /);
  });

  test("indexes are expanded into their manifests and duplicates merged by digest", () => {
    const withNote = { ...amd64, annotations: { note: "from-list" } };
    const r = mergeSources([index([withNote, arm64]), manifest(amd64), manifest(s390x)]);
    const idx = parsed(r.bytes);
    assert.deepEqual(
      idx.manifests.map((d) => d.platform?.architecture),
      ["amd64", "arm64", "s390x"],
    );
    assert.deepEqual(idx.manifests[0]!.annotations, { note: "from-list" });
  });

  test("a later duplicate's platform and annotations win, earlier annotations stay", () => {
    const first = { ...amd64, annotations: { a: "1", b: "1" } };
    const second = {
      ...amd64,
      platform: { architecture: "amd64", os: "linux", variant: "v2" },
      annotations: { b: "2" },
    };
    const idx = parsed(mergeSources([index([first]), index([second])]).bytes);
    assert.equal(idx.manifests.length, 1);
    assert.deepEqual(idx.manifests[0]!.annotations, { a: "1", b: "2" });
    assert.equal(idx.manifests[0]!.platform?.variant, "v2");
  });

  test("a nested index inside a source index is listed, not expanded", () => {
    const nested = desc("nested", MediaType.ociIndex);
    const idx = parsed(mergeSources([index([amd64, nested]), manifest(arm64)]).bytes);
    assert.deepEqual(
      idx.manifests.map((d) => d.mediaType),
      [MediaType.ociManifest, MediaType.ociIndex, MediaType.ociManifest],
    );
  });

  test("all Docker manifests give a Docker manifest list; one OCI manifest makes it an OCI index", () => {
    const d1 = { ...amd64, mediaType: MediaType.dockerManifest };
    const d2 = { ...arm64, mediaType: MediaType.dockerManifest };
    const docker = mergeSources([manifest(d1), manifest(d2)]);
    assert.equal(docker.descriptor.mediaType, MediaType.dockerManifestList);
    assert.equal(parsed(docker.bytes).mediaType, MediaType.dockerManifestList);
    const mixed = mergeSources([manifest(d1), manifest(s390x)]);
    assert.equal(mixed.descriptor.mediaType, MediaType.ociIndex);
  });

  test("a single index source is a carbon copy: the same bytes and digest", () => {
    const src = index([arm64, amd64]);
    const r = mergeSources([src]);
    assert.equal(r.carbonCopy, true);
    assert.equal(r.bytes, src.bytes);
    assert.equal(r.descriptor.digest, src.descriptor.digest);
    assert.deepEqual(r.manifests, [arm64, amd64]);
  });

  test("a single manifest source still becomes an index", () => {
    const r = mergeSources([manifest(amd64)]);
    assert.equal(r.carbonCopy, false);
    assert.deepEqual(parsed(r.bytes).manifests, [amd64]);
  });

  test("no sources is an error", () => {
    assert.throws(() => mergeSources([]), { code: "E_IMAGETOOLS_USAGE" });
  });

  test("descriptor members are re-ordered as Go marshals them and annotations sorted", () => {
    const messy = {
      platform: { os: "linux", architecture: "amd64" },
      annotations: { z: "1", a: "2" },
      size: 5,
      digest: amd64.digest,
      mediaType: MediaType.ociManifest,
    } as Descriptor;
    const text = mergeSources([manifest(messy)]).bytes.toString();
    const entry = JSON.parse(text) as { manifests: Record<string, unknown>[] };
    assert.deepEqual(Object.keys(entry.manifests[0]!), [
      "mediaType",
      "digest",
      "size",
      "annotations",
      "platform",
    ]);
    assert.deepEqual(Object.keys(entry.manifests[0]!.annotations as object), ["a", "z"]);
    assert.deepEqual(Object.keys(entry.manifests[0]!.platform as object), ["architecture", "os"]);
  });

  test("index and manifest-descriptor annotations, the latter optionally per platform", () => {
    const r = mergeSources([manifest(amd64), manifest(arm64)], {
      annotations: [
        parseAnnotation("index:org.opencontainers.image.source=https://example.com/app"),
        parseAnnotation("manifest-descriptor:all=yes"),
        parseAnnotation("manifest-descriptor[linux/arm64]:only=arm"),
      ],
    });
    const idx = parsed(r.bytes);
    assert.deepEqual(idx.annotations, {
      "org.opencontainers.image.source": "https://example.com/app",
    });
    assert.deepEqual(idx.manifests[0]!.annotations, { all: "yes" });
    assert.deepEqual(idx.manifests[1]!.annotations, { all: "yes", only: "arm" });
  });

  test("annotations with a single index source make a new index instead of a carbon copy", () => {
    const r = mergeSources([index([amd64])], { annotations: [parseAnnotation("index:k=v")] });
    assert.equal(r.carbonCopy, false);
    assert.deepEqual(parsed(r.bytes).annotations, { k: "v" });
  });

  test("annotations on a Docker manifest list are refused with a reason", () => {
    const d1 = { ...amd64, mediaType: MediaType.dockerManifest };
    assert.throws(
      () => mergeSources([manifest(d1)], { annotations: [parseAnnotation("index:k=v")] }),
      (e: unknown) =>
        e instanceof KilnError &&
        e.code === "E_IMAGETOOLS_ANNOTATION" &&
        /OCI index/.test(e.message),
    );
  });

  test("--platform keeps the matching manifests and the attestations that describe them", () => {
    const arm64v8 = { ...arm64, platform: { architecture: "arm64", os: "linux", variant: "v8" } };
    const attAmd = attestation(amd64, "att-amd64");
    const attArm = attestation(arm64v8, "att-arm64");
    const r = mergeSources([index([amd64, arm64v8, s390x, attAmd, attArm])], {
      platforms: [{ os: "linux", architecture: "arm64" }],
    });
    assert.equal(r.carbonCopy, false);
    assert.deepEqual(
      parsed(r.bytes).manifests.map((d) => d.digest),
      [arm64v8.digest, attArm.digest],
    );
  });

  test("--platform matching nothing is an error naming the platforms", () => {
    assert.throws(
      () =>
        mergeSources([manifest(amd64)], { platforms: [{ os: "linux", architecture: "riscv64" }] }),
      (e: unknown) =>
        e instanceof KilnError &&
        e.code === "E_PLATFORM_NOT_FOUND" &&
        /linux\/riscv64/.test(e.message),
    );
  });
});

describe("parseAnnotation", () => {
  test("the forms buildx accepts here", () => {
    assert.deepEqual(parseAnnotation("index:a.b=c=d"), {
      target: "index",
      key: "a.b",
      value: "c=d",
    });
    assert.deepEqual(parseAnnotation("manifest-descriptor:k="), {
      target: "manifest-descriptor",
      key: "k",
      value: "",
    });
    assert.deepEqual(parseAnnotation("manifest-descriptor[linux/arm64/v8]:k=v"), {
      target: "manifest-descriptor",
      platform: { os: "linux", architecture: "arm64" },
      key: "k",
      value: "v",
    });
  });

  for (const [flag, why] of [
    ["k=v", /type is missing/],
    ["novalue", /TYPE:KEY=VALUE/],
    ["manifest:k=v", /cannot be set when merging/],
    ["index-descriptor:k=v", /cannot be set when merging/],
    ["layer:k=v", /unknown annotation type/],
    ["index[linux/amd64]:k=v", /take no platform/],
  ] as const) {
    test(`rejects ${flag}`, () => {
      assert.throws(
        () => parseAnnotation(flag),
        (e: unknown) => e instanceof KilnError && e.code === "E_FLAG" && why.test(e.message),
      );
    });
  }
});

describe("platformFromConfig", () => {
  test("normalized from the config as buildx fills it", () => {
    assert.deepEqual(
      platformFromConfig(emptyConfig({ os: "linux", architecture: "arm64", variant: "v8" })),
      {
        architecture: "arm64",
        os: "linux",
      },
    );
    assert.deepEqual(platformFromConfig(emptyConfig({ os: "linux", architecture: "arm" })), {
      architecture: "arm",
      os: "linux",
      variant: "v7",
    });
  });

  test("what the descriptor already says wins", () => {
    assert.deepEqual(
      platformFromConfig(emptyConfig({ os: "linux", architecture: "amd64" }), {
        architecture: "amd64",
        os: "linux",
        variant: "v3",
      }),
      { architecture: "amd64", os: "linux", variant: "v3" },
    );
  });
});

describe("formatInspect", () => {
  test("an index: each manifest with its platform, size and sorted annotations; attestations as unknown/unknown", () => {
    const att = attestation(amd64, "att");
    const src = index([{ ...amd64, annotations: { z: "last", a: "first" } }, att]);
    const ref = parseReference("127.0.0.1:5000/app:1");
    const text = formatInspect({
      ref,
      descriptor: src.descriptor,
      bytes: src.bytes,
      document: parseManifestOrIndex(src.bytes),
    });
    assert.equal(
      text,
      [
        "Name:      127.0.0.1:5000/app:1",
        `MediaType: ${MediaType.ociIndex}`,
        `Digest:    ${src.descriptor.digest}`,
        "",
        "Manifests:",
        `  Name:      127.0.0.1:5000/app:1@${amd64.digest}`,
        `  MediaType: ${MediaType.ociManifest}`,
        "  Size:      5",
        "  Platform:  linux/amd64",
        "  Annotations:",
        "    a: first",
        "    z: last",
        "",
        `  Name:      127.0.0.1:5000/app:1@${att.digest}`,
        `  MediaType: ${MediaType.ociManifest}`,
        "  Size:      3",
        "  Platform:  unknown/unknown",
        "  Annotations:",
        `    vnd.docker.reference.digest: ${amd64.digest}`,
        "    vnd.docker.reference.type:   attestation-manifest",
        "",
      ].join("\n"),
    );
  });

  test("a manifest: name, media type and digest only", () => {
    const bytes = encodeJSON(
      { schemaVersion: 2, mediaType: MediaType.ociManifest, config: amd64, layers: [] },
      2,
    );
    const d = { mediaType: MediaType.ociManifest, digest: digestOf(bytes), size: bytes.length };
    const text = formatInspect({
      ref: parseReference("localhost:5000/app@" + d.digest),
      descriptor: d,
      bytes,
      document: parseManifestOrIndex(bytes),
    });
    assert.equal(
      text,
      `Name:      localhost:5000/app@${d.digest}\nMediaType: ${MediaType.ociManifest}\nDigest:    ${d.digest}\n`,
    );
  });
});
