import assert from "node:assert/strict";
import { test } from "node:test";
import { forOutputs, scanContextEnabled } from "../../../src/attest/index.js";
import { parseAttestFlags } from "../../../src/cli/attest-flags.js";
import { parseDockerfile } from "../../../src/frontend/dockerfile/index.js";
import { KilnError } from "../../../src/errors.js";

const env = {};

test("no flags: buildx's default provenance, mode=min and inline-only, no SBOM", () => {
  const r = parseAttestFlags({ attest: [] }, env);
  assert.equal(r.sbom, undefined);
  assert.deepEqual(r.provenance, {
    mode: "min",
    version: "v1",
    reproducible: false,
    inlineOnly: true,
    filename: "provenance.json",
  });
});

test("BUILDX_NO_DEFAULT_ATTESTATIONS drops the default; a bad value is an error", () => {
  assert.deepEqual(parseAttestFlags({ attest: [] }, { BUILDX_NO_DEFAULT_ATTESTATIONS: "1" }), {});
  assert.throws(
    () => parseAttestFlags({ attest: [] }, { BUILDX_NO_DEFAULT_ATTESTATIONS: "maybe" }),
    (e: unknown) => e instanceof KilnError && e.code === "E_FLAG",
  );
});

test("--provenance=true takes BuildKit's defaults (mode=max, v1); --provenance=false none", () => {
  assert.equal(parseAttestFlags({ provenance: "true", attest: [] }, env).provenance?.mode, "max");
  assert.deepEqual(parseAttestFlags({ provenance: "false", sbom: "false", attest: [] }, env), {});
  const p = parseAttestFlags(
    { provenance: "mode=min,version=v0.2,builder-id=https://ci/1", attest: [] },
    env,
  ).provenance!;
  assert.equal(p.mode, "min");
  assert.equal(p.version, "v0.2");
  assert.equal(p.builderId, "https://ci/1");
  assert.equal(p.inlineOnly, false);
});

test("--attest: later values of a type win; disabled=true turns it off; --sbom=true", () => {
  const r = parseAttestFlags(
    { attest: ["type=provenance,mode=min", "type=provenance,mode=max", "type=sbom"], sbom: "true" },
    env,
  );
  assert.equal(r.provenance?.mode, "max");
  assert.deepEqual(r.sbom, { filename: "sbom.spdx.json" });
  assert.equal(
    parseAttestFlags({ attest: ["type=provenance,disabled=true"] }, env).provenance,
    undefined,
  );
});

test("bad --attest values name the problem", () => {
  for (const bad of [
    "mode=max",
    "type=foo",
    "type=provenance,mode=huge",
    "type=provenance,version=v3",
    "type=sbom,generator=img",
    "type=provenance,x",
  ]) {
    assert.throws(
      () => parseAttestFlags({ attest: [bad] }, env),
      (e: unknown) => e instanceof KilnError && e.code === "E_FLAG" && e.message.includes(bad),
      bad,
    );
  }
});

test("forOutputs: inline-only provenance needs an image output; the implicit one skips Docker media types", () => {
  const r = parseAttestFlags({ attest: [], sbom: "true" }, env);
  assert.equal(
    forOutputs(r, { imageOutput: false, dockerMediaTypes: false, implicitProvenance: true })
      .provenance,
    undefined,
  );
  assert.ok(
    forOutputs(r, { imageOutput: true, dockerMediaTypes: false, implicitProvenance: true })
      .provenance,
  );
  assert.equal(
    forOutputs(r, { imageOutput: true, dockerMediaTypes: true, implicitProvenance: true })
      .provenance,
    undefined,
  );
  assert.ok(
    forOutputs(r, { imageOutput: false, dockerMediaTypes: false, implicitProvenance: true }).sbom,
  );
});

test("BUILDKIT_SBOM_SCAN_CONTEXT: only where the Dockerfile declares it; --build-arg or the default decides", () => {
  const df = (text: string) => parseDockerfile(text, { file: "Dockerfile" });
  const declared = df(
    "FROM scratch AS build\nFROM scratch AS final\nARG BUILDKIT_SBOM_SCAN_CONTEXT\n",
  );
  assert.equal(scanContextEnabled(declared, undefined, {}), false);
  assert.equal(
    scanContextEnabled(declared, undefined, { BUILDKIT_SBOM_SCAN_CONTEXT: "true" }),
    true,
  );
  assert.equal(
    scanContextEnabled(declared, undefined, { BUILDKIT_SBOM_SCAN_CONTEXT: "final" }),
    true,
  );
  assert.equal(
    scanContextEnabled(declared, undefined, { BUILDKIT_SBOM_SCAN_CONTEXT: "build" }),
    false,
  );
  // declared in another stage than the target: not for the target
  assert.equal(
    scanContextEnabled(declared, "build", { BUILDKIT_SBOM_SCAN_CONTEXT: "true" }),
    false,
  );
  const undeclared = df("FROM scratch\n");
  assert.equal(
    scanContextEnabled(undeclared, undefined, { BUILDKIT_SBOM_SCAN_CONTEXT: "true" }),
    false,
  );
  const global = df("ARG BUILDKIT_SBOM_SCAN_CONTEXT=true\nFROM scratch\n");
  assert.equal(scanContextEnabled(global, undefined, {}), true);
  assert.equal(
    scanContextEnabled(global, undefined, { BUILDKIT_SBOM_SCAN_CONTEXT: "false" }),
    false,
  );
});
