import assert from "node:assert/strict";
import { test } from "node:test";
import {
  imagePurl,
  provenancePredicate,
  statementOf,
  type BuildFacts,
  type PlatformFacts,
} from "../../../src/attest/index.js";
import { vertex } from "../../../src/graph/index.js";
import { parseAttestFlags } from "../../../src/cli/attest-flags.js";
import { statementErrors } from "./attest-schema.js";

const amd64 = { os: "linux", architecture: "amd64" };
const arm7 = { os: "linux", architecture: "arm", variant: "v7" };
const facts: BuildFacts = {
  dockerfileName: "Dockerfile",
  dockerfileText: "FROM busybox\nARG TOKEN\nRUN --mount=type=secret,id=npmrc true\n",
  buildArgs: { TOKEN: "build-arg-value-1234" },
  labels: { team: "a" },
  network: "default",
  noCache: false,
  secretIds: ["npmrc"],
  sshIds: [],
  builderPlatform: amd64,
  invocationId: "abc",
  startedOn: new Date("2026-01-01T00:00:00Z"),
};
const base = vertex(
  {
    kind: "image",
    ref: "docker.io/library/busybox@sha256:" + "b".repeat(64),
    manifestDigest: "sha256:" + "b".repeat(64),
  },
  [],
  arm7,
  "FROM busybox",
);
const platform: PlatformFacts = {
  images: [{ ref: "busybox:1.36", platform: arm7, digest: "sha256:" + "a".repeat(64) }],
  http: [{ url: "https://example.com/x.tgz", digest: "sha256:" + "c".repeat(64) }],
  git: [{ url: "https://example.com/r.git#v1", commit: "f".repeat(40) }],
  locals: ["context"],
  root: vertex(
    { kind: "local", name: "context", dir: "/home/me/secret-path", excludePatterns: [] },
    [base],
    arm7,
    "ctx",
  ),
};
/** The value at a dotted path (`a.b.0.c`) of a JSON value. */
const get = (o: unknown, path: string): unknown =>
  path.split(".").reduce<unknown>((x, k) => (x as Record<string, unknown> | undefined)?.[k], o);
const finished = new Date("2026-01-01T00:01:00Z");
const prov = (flag: string) =>
  provenancePredicate(
    parseAttestFlags({ provenance: flag, attest: [] }, {}).provenance!,
    facts,
    platform,
    finished,
  );
const subject = [
  { name: imagePurl("reg.example:5000/app:1", arm7), digest: { sha256: "d".repeat(64) } },
];

test("purls of images as BuildKit writes them", () => {
  assert.equal(imagePurl("busybox", amd64), "pkg:docker/busybox@latest?platform=linux%2Famd64");
  assert.equal(
    imagePurl("reg.example:5000/team/app:1", arm7),
    "pkg:docker/reg.example%3A5000/team/app@1?platform=linux%2Farm%2Fv7",
  );
  assert.equal(
    imagePurl("alpine@sha256:" + "e".repeat(64)),
    `pkg:docker/alpine?digest=sha256:${"e".repeat(64)}`,
  );
});

test("mode=min: materials and timestamps, no build args, labels or secret ids", () => {
  const { predicateType, predicate } = prov("mode=min");
  assert.equal(predicateType, "https://slsa.dev/provenance/v1");
  const text = JSON.stringify(predicate);
  assert.ok(!text.includes("build-arg-value-1234"));
  assert.ok(!text.includes("npmrc"));
  assert.ok(!text.includes("secret-path"));
  const p = predicate;
  assert.deepEqual(get(p, "buildDefinition.resolvedDependencies"), [
    {
      uri: "pkg:docker/busybox@1.36?platform=linux%2Farm%2Fv7",
      digest: { sha256: "a".repeat(64) },
    },
    { uri: "https://example.com/r.git#v1", digest: { sha1: "f".repeat(40) } },
    { uri: "https://example.com/x.tgz", digest: { sha256: "c".repeat(64) } },
  ]);
  assert.deepEqual(get(p, "buildDefinition.externalParameters.request"), {
    frontend: "dockerfile.v0",
    locals: [{ name: "context" }, { name: "dockerfile" }],
  });
  assert.equal(get(p, "runDetails.metadata.buildkit_completeness.request"), false);
  assert.equal(get(p, "runDetails.metadata.startedOn"), "2026-01-01T00:00:00.000Z");
  assert.equal(get(p, "runDetails.metadata.finishedOn"), "2026-01-01T00:01:00.000Z");
  assert.equal(get(p, "buildDefinition.internalParameters.buildConfig"), undefined);
  assert.equal(
    statementErrors(
      statementOf({ predicateType, predicate, path: "p", inlineOnly: true }, subject),
    ),
    "",
  );
});

test("mode=max: build args, secret ids (never values), the Dockerfile and the steps", () => {
  const { predicateType, predicate } = prov("mode=max");
  const p = predicate;
  assert.equal(
    get(p, "buildDefinition.externalParameters.request.args.build-arg:TOKEN"),
    "build-arg-value-1234",
  );
  assert.deepEqual(get(p, "buildDefinition.externalParameters.request.secrets"), [{ id: "npmrc" }]);
  const data = get(p, "runDetails.metadata.buildkit_metadata.source.infos.0.data") as string;
  assert.equal(Buffer.from(data, "base64").toString(), facts.dockerfileText);
  assert.equal(
    get(p, "buildDefinition.internalParameters.buildConfig.llbDefinition.0.id"),
    "step0",
  );
  assert.equal(
    get(p, "buildDefinition.internalParameters.buildConfig.llbDefinition.1.id"),
    "step1",
  );
  assert.deepEqual(
    get(p, "buildDefinition.internalParameters.buildConfig.llbDefinition.1.inputs"),
    ["step0:0"],
  );
  assert.ok(!JSON.stringify(p).includes("secret-path"), "host paths stay out");
  assert.equal(
    statementErrors(
      statementOf({ predicateType, predicate, path: "p", inlineOnly: false }, subject),
    ),
    "",
  );
});

test("version=v0.2: BuildKit's conversion, valid against the v0.2 schema", () => {
  const { predicateType, predicate } = prov(
    "mode=max,version=v0.2,builder-id=https://ci.example/run/1",
  );
  assert.equal(predicateType, "https://slsa.dev/provenance/v0.2");
  const p = predicate;
  assert.equal(get(p, "buildType"), "https://mobyproject.org/buildkit@v1");
  assert.equal(get(p, "builder.id"), "https://ci.example/run/1");
  assert.equal(get(p, "invocation.configSource.entryPoint"), "Dockerfile");
  assert.equal(get(p, "invocation.environment.platform"), "linux/amd64");
  assert.equal(get(p, "materials.length"), 3);
  assert.deepEqual(get(p, "metadata.completeness"), {
    parameters: true,
    environment: true,
    materials: false,
  });
  assert.equal(get(p, "metadata.buildInvocationID"), "abc");
  assert.ok(
    (get(p, "metadata") as Record<string, { source?: unknown }>)[
      "https://mobyproject.org/buildkit@v1#metadata"
    ]?.source,
  );
  assert.equal(
    statementErrors(
      statementOf({ predicateType, predicate, path: "p", inlineOnly: false }, subject),
    ),
    "",
  );
});

test("a statement needs a subject: the schema rejects an empty one", () => {
  const { predicateType, predicate } = prov("mode=min");
  assert.notEqual(
    statementErrors(statementOf({ predicateType, predicate, path: "p", inlineOnly: false }, [])),
    "",
  );
});
