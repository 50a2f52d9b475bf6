// `--build-context name=oci-layout://DIR[:TAG][@DIGEST]`: the value's grammar (as buildx cuts
// it), which index.json entry a tag names, and the provenance material of such an image.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseOciLayoutContext, selectLayoutEntry } from "../../../src/source/index.js";
import { parseBuildContexts } from "../../../src/cli/options.js";
import { materialPurl } from "../../../src/attest/purl.js";
import { KilnError } from "../../../src/errors.js";
import type { Descriptor, ImageIndex } from "../../../src/oci/index.js";

const d1 = `sha256:${"1".repeat(64)}`;
const d2 = `sha256:${"2".repeat(64)}`;
const d3 = `sha256:${"3".repeat(64)}`;

test("oci-layout:// values: directory, tag (default latest) and digest", () => {
  assert.equal(parseOciLayoutContext("docker-image://busybox"), undefined);
  assert.equal(parseOciLayoutContext("./dir"), undefined);
  assert.deepEqual(parseOciLayoutContext("oci-layout://out/img"), {
    dir: "out/img",
    tag: "latest",
    digest: undefined,
  });
  assert.deepEqual(parseOciLayoutContext("oci-layout:///abs/img:v2"), {
    dir: "/abs/img",
    tag: "v2",
    digest: undefined,
  });
  assert.deepEqual(parseOciLayoutContext(`oci-layout://img@${d1}`), {
    dir: "img",
    tag: "latest",
    digest: d1,
  });
  assert.deepEqual(parseOciLayoutContext(`oci-layout://img:v2@${d1}`), {
    dir: "img",
    tag: "v2",
    digest: d1,
  });
  // a directory holding ":" or "@" (a kilnd request directory, say) stays whole
  assert.deepEqual(parseOciLayoutContext(`oci-layout:///a:b/c@d/img@${d1}`), {
    dir: "/a:b/c@d/img",
    tag: "latest",
    digest: d1,
  });
  assert.deepEqual(parseOciLayoutContext("oci-layout:///a:b/c@d/img:v3"), {
    dir: "/a:b/c@d/img",
    tag: "v3",
    digest: undefined,
  });
});

test("oci-layout:// values that name no layout or no digest are refused", () => {
  for (const bad of [
    "",
    ":v1",
    "img:",
    "img@sha256:abc",
    `img@md5:${"1".repeat(32)}`,
    `img@${d1.toUpperCase()}`,
  ]) {
    assert.throws(
      () => parseOciLayoutContext(`oci-layout://${bad}`),
      (e: unknown) => e instanceof KilnError && e.code === "E_OCI_LAYOUT" && e.hint !== undefined,
      bad,
    );
  }
});

test("--build-context accepts oci-layout:// and checks it before the build", () => {
  assert.deepEqual(parseBuildContexts([`base=oci-layout://img@${d1}`, "src=./dir"]), {
    base: `oci-layout://img@${d1}`,
    src: "./dir",
  });
  assert.throws(
    () => parseBuildContexts(["base=oci-layout://img:"]),
    (e: unknown) => e instanceof KilnError && e.code === "E_OCI_LAYOUT",
  );
  assert.throws(
    () => parseBuildContexts(["base=ftp://host/img"]),
    (e: unknown) => e instanceof KilnError && e.code === "E_FLAG" && /oci-layout/.test(e.message),
  );
});

function entry(digest: string, annotations?: Record<string, string>): Descriptor {
  return { mediaType: "application/vnd.oci.image.index.v1+json", digest, size: 1, annotations };
}

function index(...manifests: Descriptor[]): ImageIndex {
  return { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests };
}

test("a tag selects the entry whose containerd name, then OCI ref name, is the tag", () => {
  const idx = index(
    entry(d1, { "org.opencontainers.image.ref.name": "v1" }),
    entry(d2, { "org.opencontainers.image.ref.name": "latest" }),
    entry(d3, { "io.containerd.image.name": "latest" }),
  );
  assert.equal(selectLayoutEntry(idx, "v1")?.digest, d1);
  // the containerd name wins over the OCI ref name, as in BuildKit's ociindex
  assert.equal(selectLayoutEntry(idx, "latest")?.digest, d3);
  assert.equal(selectLayoutEntry(idx, "v9"), undefined);
});

test("a single-entry index stands for any tag; an empty one for none", () => {
  assert.equal(selectLayoutEntry(index(entry(d1)), "latest")?.digest, d1);
  assert.equal(
    selectLayoutEntry(index(entry(d1, { "org.opencontainers.image.ref.name": "v1" })), "v2")
      ?.digest,
    d1,
  );
  assert.equal(selectLayoutEntry(index(), "latest"), undefined);
  assert.equal(selectLayoutEntry(index(entry(d1), entry(d2)), "latest"), undefined);
});

test("the image of an oci-layout context is a pkg:oci material named after the context", () => {
  const arm64 = { os: "linux", architecture: "arm64" };
  assert.equal(
    materialPurl(`oci-layout://base@${d1}`, arm64),
    `pkg:oci/base?digest=sha256%3A${"1".repeat(64)}&platform=linux%2Farm64`,
  );
  // a context name that is no image name still gets one
  assert.equal(
    materialPurl(`oci-layout://My_Base@${d1}`, arm64),
    `pkg:oci/My_Base?digest=sha256%3A${"1".repeat(64)}&platform=linux%2Farm64`,
  );
  assert.equal(materialPurl("busybox", arm64), "pkg:docker/busybox@latest?platform=linux%2Farm64");
});
