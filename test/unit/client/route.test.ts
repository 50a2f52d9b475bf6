import { test } from "node:test";
import assert from "node:assert/strict";
import { routePlatforms, type NodeOffer } from "../../../src/client/index.js";
import { isKilnError } from "../../../src/errors.js";
import { format, normalize, parse } from "../../../src/platform/index.js";

const p = (s: string) => normalize(parse(s));
const ps = (...l: string[]) => l.map(p);

const emulatingAll = ps("linux/arm64", "linux/arm/v7", "linux/s390x");
const a: NodeOffer = {
  name: "a",
  configured: ps("linux/amd64"),
  native: ps("linux/amd64"),
  emulated: emulatingAll,
};
const b: NodeOffer = {
  name: "b",
  configured: ps("linux/arm64", "linux/arm/v7"),
  native: ps("linux/amd64"),
  emulated: [],
};
const arm: NodeOffer = { name: "arm", configured: [], native: ps("linux/arm64"), emulated: [] };

const show = (routes: ReturnType<typeof routePlatforms>) =>
  routes.map((r) => `${r.node}:${r.kind}:${r.platforms.map(format).join(",")}`);

test("configured platforms win; platforms on one node are one solve", () => {
  assert.deepEqual(show(routePlatforms(ps("linux/amd64", "linux/arm64", "linux/arm/v7"), [a, b])), [
    "a:configured:linux/amd64",
    "b:configured:linux/arm64,linux/arm/v7",
  ]);
});

test("a native node beats an earlier node that would emulate", () => {
  // buildx picks the first node able to run the platform, even by emulation (docker/buildx#1254)
  assert.deepEqual(show(routePlatforms(ps("linux/arm64"), [a, arm])), ["arm:native:linux/arm64"]);
});

test("without a native node, emulation is used unless strict", () => {
  assert.deepEqual(show(routePlatforms(ps("linux/arm64", "linux/amd64"), [a])), [
    "a:emulated:linux/arm64,linux/amd64",
  ]);
  assert.throws(
    () => routePlatforms(ps("linux/arm64"), [a], { strict: true, unavailable: ["b"] }),
    (e: unknown) => {
      assert.ok(isKilnError(e));
      assert.equal(e.code, "E_NO_NODE");
      assert.match(e.message, /no node can build linux\/arm64 natively \(--strict-platforms\)/);
      assert.match(
        e.message,
        /a: native linux\/amd64; emulated linux\/arm64, linux\/arm\/v7, linux\/s390x/,
      );
      assert.match(e.message, /b: unavailable/);
      return true;
    },
  );
});

test("strict matching: an arm64 node does not take arm/v7 unless it says so", () => {
  assert.throws(
    () => routePlatforms(ps("linux/arm/v7"), [arm]),
    /no node can build linux\/arm\/v7/,
  );
});

test("routing is stable: ties keep builder order", () => {
  const a2 = { ...a, name: "a2" };
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(show(routePlatforms(ps("linux/amd64"), [a, a2])), [
      "a:configured:linux/amd64",
    ]);
  }
});
