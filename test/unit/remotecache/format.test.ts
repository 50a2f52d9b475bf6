import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeCache,
  decodeInline,
  encodeCache,
  encodeInline,
  parseCacheConfig,
  type CacheEntry,
  type CachedLayer,
} from "../../../src/remotecache/format.js";
import { parseCacheFrom, parseCacheTo } from "../../../src/remotecache/spec.js";
import { isKilnError } from "../../../src/errors.js";

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const layer = (c: string, createdAt?: string): CachedLayer => ({
  digest: d(c),
  size: 10,
  mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
  diffID: d(c.toUpperCase() === c ? "f" : c.toUpperCase() === "A" ? "e" : "d"),
  createdAt,
});

const base = layer("a");
const run = layer("b", "2026-01-02T03:04:05Z");
const copy = layer("c", "2026-01-02T03:04:06Z");
const other = layer("1", "2026-01-02T03:04:07Z");

const entries: CacheEntry[] = [
  { key: d("0"), inputs: [], layers: [base] },
  { key: d("2"), inputs: [d("0")], layers: [base, run] },
  { key: d("3"), inputs: [d("2"), d("9")], layers: [base, run, copy] },
  { key: d("4"), inputs: [d("0")], layers: [base, other] },
  { key: d("9"), inputs: [] },
];

test("encode: BuildKit's structure — layers with parent indexes, records linking inputs", () => {
  const { config, blobs } = encodeCache(entries);
  assert.deepEqual(config.layers, [
    { blob: d("a"), parent: -1 },
    { blob: d("b") }, // parent 0 is left out, as Go's omitempty does
    { blob: d("c"), parent: 1 },
    { blob: d("1") },
  ]);
  assert.deepEqual(config.records![2], {
    digest: d("3"),
    layers: [{ layer: 2, createdAt: "2026-01-02T03:04:06Z" }],
    inputs: [[{ link: 1 }], [{ link: 4 }]],
  });
  assert.deepEqual(config.records![4], { digest: d("9") });
  assert.deepEqual(
    blobs.map((b) => b.digest),
    [d("a"), d("b"), d("c"), d("1")],
  );
  assert.equal(blobs[1]!.annotations!["containerd.io/uncompressed"], run.diffID);
  assert.equal(blobs[1]!.annotations!["buildkit/createdat"], run.createdAt);
});

test("decode(encode(x)) gives the entries back, through JSON", () => {
  const { config, blobs } = encodeCache(entries);
  const parsed = parseCacheConfig(Buffer.from(JSON.stringify(config)), "t");
  const back = decodeCache(parsed, JSON.parse(JSON.stringify(blobs)) as typeof blobs, "t");
  assert.deepEqual(
    back,
    entries.map((e) => ({ ...e, layers: e.layers })),
  );
});

test("decode: chains results, unknown blobs give no result, parent loops are refused", () => {
  const { blobs } = encodeCache(entries);
  const chained = decodeCache(
    {
      layers: [
        { blob: d("a"), parent: -1 },
        { blob: d("c"), parent: -1 },
      ],
      records: [{ digest: d("5"), chains: [{ layers: [1, 0], createdAt: "" }] }],
    },
    blobs,
    "t",
  );
  assert.deepEqual(
    chained[0]!.layers!.map((l) => l.digest),
    [d("c"), d("a")],
  );
  const missing = decodeCache(
    {
      layers: [{ blob: d("7"), parent: -1 }],
      records: [{ digest: d("5"), layers: [{ layer: 0, createdAt: "" }] }],
    },
    blobs,
    "t",
  );
  assert.equal(missing[0]!.layers, undefined);
  assert.throws(
    () =>
      decodeCache(
        {
          layers: [{ blob: d("a"), parent: 1 }, { blob: d("b") }],
          records: [{ digest: d("5"), layers: [{ layer: 1, createdAt: "" }] }],
        },
        blobs,
        "t",
      ),
    (e: unknown) => isKilnError(e) && e.code === "E_CACHE_INVALID",
  );
  assert.throws(() => parseCacheConfig(Buffer.from("[1]"), "t"), /no layers\/records/);
});

test("inline: records only, layer indexes are the image's layers", () => {
  const image = [base, run, copy];
  const value = encodeInline(entries.slice(0, 3), image);
  const records = JSON.parse(Buffer.from(value, "base64").toString()) as {
    digest: string;
    layers?: { layer: number }[];
  }[];
  assert.deepEqual(
    records.map((r) => [r.digest, r.layers?.[0]?.layer]),
    [
      [d("0"), 0],
      [d("2"), 1],
      [d("3"), 2],
    ],
  );
  const back = decodeInline(value, image, "t");
  assert.deepEqual(
    back.map((e) => e.layers?.map((l) => l.digest)),
    [[d("a")], [d("a"), d("b")], [d("a"), d("b"), d("c")]],
  );
  assert.throws(() => decodeInline(42, image, "t"), /not a string/);
});

test("flags: buildx's attributes, a bare --cache-from is a registry ref, bad values named", () => {
  assert.deepEqual(parseCacheFrom("reg/app:cache", new Map()), {
    type: "registry",
    ref: "reg/app:cache",
    insecure: false,
  });
  assert.deepEqual(
    parseCacheFrom(
      "type=local,src=/c",
      new Map([
        ["type", "local"],
        ["src", "/c"],
      ]),
    ),
    { type: "local", src: "/c", tag: "latest", digest: undefined },
  );
  const to = parseCacheTo(
    "x",
    new Map([
      ["type", "registry"],
      ["ref", "r/c:1"],
      ["mode", "max"],
      ["image-manifest", "true"],
      ["ignore-error", "true"],
    ]),
  );
  assert.deepEqual(to, {
    type: "registry",
    ref: "r/c:1",
    mode: "max",
    compression: "gzip",
    ociMediaTypes: true,
    imageManifest: true,
    ignoreError: true,
    insecure: false,
  });
  const bad = (f: () => unknown, re: RegExp): void => {
    assert.throws(f, (e: unknown) => isKilnError(e) && e.code === "E_FLAG" && re.test(e.message));
  };
  bad(() => parseCacheTo("v", new Map([["type", "registry"]])), /ref= is required/);
  bad(
    () =>
      parseCacheTo(
        "v",
        new Map([
          ["type", "local"],
          ["dest", "/d"],
          ["mode", "all"],
        ]),
      ),
    /mode=all/,
  );
  bad(() => parseCacheTo("v", new Map([["type", "s3"]])), /type=s3 is not supported/);
  bad(
    () =>
      parseCacheTo(
        "v",
        new Map([
          ["ref", "r/c"],
          ["image-manifest", "true"],
          ["oci-mediatypes", "false"],
        ]),
      ),
    /needs OCI media types/,
  );
  bad(
    () =>
      parseCacheFrom(
        "ref=r,bogus=1",
        new Map([
          ["type", "registry"],
          ["ref", "r"],
          ["bogus", "1"],
        ]),
      ),
    /unknown attribute bogus/,
  );
  bad(
    () =>
      parseCacheFrom(
        "type=local,src=/c,digest=x",
        new Map([
          ["type", "local"],
          ["src", "/c"],
          ["digest", "x"],
        ]),
      ),
    /digest=x/,
  );
});
