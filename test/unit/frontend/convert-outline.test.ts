import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCallSpec, runCall } from "../../../src/cli/call.js";
import { parseDockerfile } from "../../../src/frontend/dockerfile/index.js";
import {
  formatOutline,
  formatTargets,
  listTargets,
} from "../../../src/frontend/dockerfile/outline.js";
import { convert } from "./convert-helpers.js";

const DF = `# BASE the image everything starts from
ARG BASE=alpine
ARG TAG=3.20
ARG IMG=\${BASE}:\${TAG}
ARG UNUSED=1
# tools installs build tools
FROM --platform=$BUILDPLATFORM alpine AS tools
RUN --mount=type=ssh,id=github,required apk add git

# build compiles the app
FROM $BASE AS build
# VERSION is stamped into the binary
ARG VERSION=dev
ARG TAG
COPY --from=tools /usr/bin/git /usr/bin/git
RUN --mount=type=secret,id=npmrc,required --mount=type=secret,id=aws make

FROM build AS test
ARG COVERAGE
RUN --mount=type=secret,id=codecov make test

# release is the shipped image
FROM alpine AS release
COPY --from=build /app /app
`;

test("targets: every stage with its doc comment and base, last is the default", () => {
  const t = listTargets(parseDockerfile(DF));
  assert.deepEqual(
    t.map((x) => [x.name, x.description, x.base, x.default ?? false]),
    [
      ["tools", "installs build tools", "alpine", false],
      ["build", "compiles the app", "$BASE", false],
      ["test", undefined, "build", false],
      ["release", "is the shipped image", "alpine", true],
    ],
  );
  assert.equal(
    formatTargets(t),
    "TARGET            DESCRIPTION\n" +
      "tools             installs build tools\n" +
      "build             compiles the app\n" +
      "test              \n" +
      "release (default) is the shipped image\n",
  );
});

test("outline: args the target and its dependencies use, secrets and ssh, in file order", async () => {
  const r = await convert(DF, { buildArgs: { VERSION: "1.2" }, images: undefined });
  assert.deepEqual(r.outline, {
    name: "release",
    description: "is the shipped image",
    args: [
      { name: "BASE", value: "alpine", description: "the image everything starts from", line: 2 },
      { name: "TAG", value: "3.20", line: 3 },
      { name: "VERSION", value: "1.2", description: "is stamped into the binary", line: 13 },
    ],
    secrets: [
      { name: "npmrc", required: true, line: 16 },
      { name: "aws", line: 16 },
    ],
    ssh: [{ name: "github", required: true, line: 8 }],
  });
  assert.equal(
    formatOutline(r.outline),
    "TARGET:      release\n" +
      "DESCRIPTION: is the shipped image\n\n" +
      "BUILD ARG   VALUE    DESCRIPTION\n" +
      "BASE        alpine   the image everything starts from\n" +
      "TAG         3.20     \n" +
      "VERSION     1.2      is stamped into the binary\n\n" +
      "SECRET   REQUIRED\n" +
      "npmrc    true\n" +
      "aws      \n\n" +
      "SSH      REQUIRED\n" +
      "github   true\n\n",
  );
});

test("outline of a stage built FROM another includes the parent's args and secrets", async () => {
  const r = await convert(DF, { target: "test" });
  assert.deepEqual(
    r.outline.args.map((a) => [a.name, a.value ?? ""]),
    [
      ["BASE", "alpine"],
      ["TAG", "3.20"],
      ["VERSION", "dev"],
      ["COVERAGE", ""],
    ],
  );
  assert.deepEqual(
    r.outline.secrets.map((s) => s.name),
    ["npmrc", "aws", "codecov"],
  );
});

test("outline: a global ARG used in FROM pulls in the ARGs its default expanded", async () => {
  const r = await convert("ARG REPO=alpine\nARG TAG=3\nARG IMG=$REPO:$TAG\nFROM $IMG\n", {
    images: { "alpine:3": {} },
  });
  assert.deepEqual(
    r.outline.args.map((a) => a.name),
    ["REPO", "TAG", "IMG"],
  );
});

test("--call spec parsing", () => {
  assert.deepEqual(parseCallSpec("outline"), { method: "outline", format: "text" });
  assert.deepEqual(parseCallSpec("targets,format=json"), { method: "targets", format: "json" });
  assert.deepEqual(parseCallSpec("build"), { method: "build", format: "text" });
  assert.deepEqual(parseCallSpec("check"), { method: "check", format: "text" });
  assert.throws(() => parseCallSpec("lint"), /--call "lint" is not supported/);
  assert.throws(() => parseCallSpec("outline,format=yaml"), /invalid --call option/);
});

test("runCall reads the Dockerfile and prints text or BuildKit-shaped JSON", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-call-"));
  try {
    await writeFile(join(dir, "Dockerfile"), DF);
    const req = { contextDir: dir, dockerfile: "Dockerfile", buildArgs: {}, platforms: [] };
    const targets = JSON.parse(
      (await runCall({ method: "targets", format: "json" }, req)).text,
    ) as {
      targets: { name: string; default?: boolean; location: unknown }[];
      sources: string[];
    };
    assert.deepEqual(targets.targets.at(-1), {
      name: "release",
      default: true,
      description: "is the shipped image",
      base: "alpine",
      location: { ranges: [{ start: { line: 23 }, end: { line: 23 } }] },
    });
    assert.equal(Buffer.from(targets.sources[0]!, "base64").toString(), DF);
    const outline = JSON.parse(
      (await runCall({ method: "outline", format: "json" }, { ...req, target: "build" })).text,
    ) as {
      name: string;
      args: { name: string }[];
      secrets: { name: string; required?: boolean }[];
    };
    assert.equal(outline.name, "build");
    assert.deepEqual(
      outline.args.map((a) => a.name),
      ["BASE", "TAG", "VERSION"],
    );
    assert.deepEqual(outline.secrets[0], {
      name: "npmrc",
      required: true,
      location: { ranges: [{ start: { line: 16 }, end: { line: 16 } }] },
    });
    assert.match(
      (await runCall({ method: "outline", format: "text" }, req)).text,
      /^TARGET: +release\n/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("runCall check: the findings with their lines, and a failure when there are any", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-call-"));
  try {
    const req = { contextDir: dir, dockerfile: "Dockerfile", buildArgs: {}, platforms: [] };
    // check=error=true does not stop the report: every finding is listed
    await writeFile(join(dir, "Dockerfile"), "# check=error=true\nFROM alpine as base\nCMD run\n");
    const bad = await runCall({ method: "check", format: "text" }, req);
    assert.equal(
      bad.text,
      [
        "WARNING: FromAsCasing - 'as' and 'FROM' keywords' casing do not match",
        `${join(dir, "Dockerfile")}:2`,
        "     2 | FROM alpine as base",
        "",
        "WARNING: JSONArgsRecommended - JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        `${join(dir, "Dockerfile")}:3`,
        "     3 | CMD run",
        "",
        "Check complete, 2 warnings have been found!",
        "",
      ].join("\n"),
    );
    assert.equal(bad.failure?.code, "E_DOCKERFILE_LINT");
    assert.match(bad.failure?.message ?? "", /2 Dockerfile checks failed/);
    const json = JSON.parse((await runCall({ method: "check", format: "json" }, req)).text) as {
      warnings: { rule: string; line: number }[];
    };
    assert.deepEqual(
      json.warnings.map((w) => `${w.rule}:${w.line}`),
      ["FromAsCasing:2", "JSONArgsRecommended:3"],
    );
    await writeFile(join(dir, "Dockerfile"), 'FROM alpine AS base\nCMD ["run"]\n');
    const good = await runCall({ method: "check", format: "text" }, req);
    assert.equal(good.text, "Check complete, no warnings found.\n");
    assert.equal(good.failure, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
