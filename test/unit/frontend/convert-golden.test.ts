/**
 * Golden op graphs of realistic multi-stage / cross-compile Dockerfiles for three targets, and
 * the property multi-platform builds rest on: $BUILDPLATFORM work has the same digests for
 * every target. Set KILN_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalJSON, topoSort, type Vertex } from "../../../src/graph/index.js";
import { convert, type Converted } from "./convert-helpers.js";

const DIR = join(import.meta.dirname, "../../fixtures/golden");
const TARGETS = ["linux/amd64", "linux/arm64", "linux/arm/v7"];
const UPDATE = process.env.KILN_UPDATE_GOLDEN === "1";

function short(v: Vertex): string {
  return v.digest.slice(7, 19);
}

/** Every vertex with its full op, then the image config: a stable, reviewable dump. */
function dump(r: Converted): string {
  const lines: string[] = [];
  for (const v of r.root ? topoSort([r.root]) : []) {
    const p = v.platform
      ? `${v.platform.os}/${v.platform.architecture}${v.platform.variant ? "/" + v.platform.variant : ""}`
      : "-";
    lines.push(`${short(v)} ${v.op.kind} ${p} <- [${v.inputs.map(short).join(",")}]`);
    lines.push(`  name: ${v.name}`);
    lines.push(`  op: ${canonicalJSON(v.op)}`);
  }
  lines.push(`config: ${JSON.stringify(r.config, null, 2)}`);
  lines.push(`warnings: ${JSON.stringify(r.warnings.map((w) => w.message))}`);
  return lines.join("\n") + "\n";
}

async function build(name: string, platform: string): Promise<Converted> {
  const src = await readFile(join(DIR, `${name}.Dockerfile`), "utf8");
  return convert(src, { platform, multiPlatform: true });
}

for (const name of ["go-xx", "rust", "node", "three-stage"]) {
  for (const platform of TARGETS) {
    test(`golden graph: ${name} for ${platform}`, async () => {
      const got = dump(await build(name, platform));
      const file = join(DIR, `${name}.${platform.replaceAll("/", "-")}.txt`);
      if (UPDATE) await writeFile(file, got);
      assert.equal(got, await readFile(file, "utf8"));
    });
  }
}

function byName(r: Converted, prefix: RegExp): Map<string, Vertex> {
  const m = new Map<string, Vertex>();
  for (const v of r.root ? topoSort([r.root]) : []) {
    // the platform prefix differs per target; the step itself is the key
    const step = v.name.replace(/^\[[^ ]+ /, "[");
    if (prefix.test(step)) m.set(step, v);
  }
  return m;
}

test("$BUILDPLATFORM stages: identical digests across targets until a TARGET* ARG is used", async () => {
  const [amd, arm, armv7] = await Promise.all(TARGETS.map((p) => build("go-xx", p)));
  const stagesOf = (r: Converted): Map<string, Vertex> => byName(r, /^\[(xx|build) /);
  const a = stagesOf(amd!);
  const steps = [...a.keys()];
  assert.equal(steps.filter((s) => / FROM /.test(s)).length, 2);
  assert.deepEqual(
    steps.filter((s) => !/ FROM /.test(s)),
    [
      "[build 2/7] COPY --from=xx / /",
      "[build 3/7] WORKDIR /src",
      "[build 4/7] COPY go.mod go.sum ./",
      "[build 5/7] RUN --mount=type=cache,target=/go/pkg/mod go mod download",
      "[build 6/7] COPY . .",
      "[build 7/7] RUN --mount=type=cache,target=/go/pkg/mod     --mount=type=cache,target=/root/.cache/go-build     xx-go build -o /out/app ./cmd/app && xx-verify /out/app",
    ],
  );
  for (const other of [arm!, armv7!]) {
    const o = stagesOf(other);
    for (const step of steps.slice(0, -1)) {
      assert.equal(o.get(step)?.digest, a.get(step)!.digest, `${step} differs between targets`);
    }
    // the RUN after ARG TARGETPLATFORM sees the target in its env: per-target work
    const last = steps.at(-1)!;
    assert.notEqual(o.get(last)!.digest, a.get(last)!.digest);
  }
  // the final stage is per target, all the way from its base image
  assert.notEqual(amd!.root!.digest, arm!.root!.digest);
  assert.notEqual(arm!.root!.digest, armv7!.root!.digest);
  const finalFrom = (r: Converted): Vertex =>
    topoSort([r.root!]).find((v) => v.name.includes("FROM registry.test/gcr.io"))!;
  assert.notEqual(finalFrom(amd!).digest, finalFrom(arm!).digest);
});

test("a $BUILDPLATFORM stage shared by two targets in one build runs once (same vertex digest)", async () => {
  const [amd, arm] = await Promise.all(
    ["linux/amd64", "linux/arm64"].map((p) => build("three-stage", p)),
  );
  const tools = (r: Converted): Vertex =>
    topoSort([r.root!]).find((v) => v.name.endsWith("RUN apk add --no-cache make"))!;
  assert.equal(tools(amd!).digest, tools(arm!).digest);
  assert.deepEqual(tools(arm!).platform, { os: "linux", architecture: "amd64" });
  assert.match(tools(arm!).name, /^\[linux\/amd64 tools 2\/2\] RUN/);
});
