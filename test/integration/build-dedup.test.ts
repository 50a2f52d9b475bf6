// A $BUILDPLATFORM stage shared by every target platform runs once, natively; per-target steps
// run once per platform; each platform's image holds its own files (issues 6 and 7).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  kilnOk,
  named,
  removeTree,
  tempDir,
  testRegistry,
  unpackPlatform,
  vertexRecords,
  writeContext,
  type PlatformSpec,
} from "../fixtures/build-cli.js";

const reg = testRegistry();

const dockerfile = `FROM --platform=$BUILDPLATFORM ${reg}/base/busybox AS build
RUN echo building > /b
ARG TARGETARCH
RUN echo $TARGETARCH > /t
FROM ${reg}/base/busybox
COPY --from=build /b /t /
RUN uname -m > /arch
`;

interface Target {
  platform: string;
  spec: PlatformSpec;
  /** TARGETARCH */
  arch: string;
  uname: string;
}

const amd64: Target = {
  platform: "linux/amd64",
  spec: { architecture: "amd64" },
  arch: "amd64",
  uname: "x86_64",
};
const arm64: Target = {
  platform: "linux/arm64",
  spec: { architecture: "arm64" },
  arch: "arm64",
  uname: "aarch64",
};
const armv7: Target = {
  platform: "linux/arm/v7",
  spec: { architecture: "arm", variant: "v7" },
  arch: "arm",
  uname: "armv7l",
};

async function checkSharedStage(targets: Target[]): Promise<void> {
  const dir = await tempDir("dedup");
  try {
    const ctx = await writeContext(join(dir, "ctx"), { Dockerfile: dockerfile });
    const out = join(dir, "out");
    const r = await kilnOk(
      [
        "build",
        "--platform",
        targets.map((t) => t.platform).join(","),
        "--output",
        `type=oci,dest=${out},tar=false`,
        ".",
      ],
      { root: join(dir, "root"), cwd: ctx },
    );
    const vs = vertexRecords(r.events);

    // The shared RUN: one vertex, started once, on the build platform, not emulated; its name
    // has no "->" since nothing target-specific is in its environment.
    const shared = named(vs, /RUN echo building > \/b$/);
    assert.equal(shared.length, 1, `one shared vertex: ${JSON.stringify(shared)}`);
    assert.equal(shared[0]!.starts, 1);
    assert.equal(shared[0]!.emulated, false);
    assert.match(shared[0]!.name, /^\[linux\/amd64 build 2\/3\] /);

    // The per-target RUN: one vertex per platform, all native (build stage), named build->target.
    for (const t of targets) {
      const step = named(vs, new RegExp(`RUN echo ${t.arch} > /t$`));
      assert.equal(step.length, 1, `per-target step for ${t.platform}`);
      assert.equal(step[0]!.starts, 1);
      assert.equal(step[0]!.emulated, false);
      const prefix =
        t.platform === "linux/amd64" ? "linux/amd64" : `linux/amd64->${t.platform.slice(6)}`;
      assert.ok(step[0]!.name.startsWith(`[${prefix} build 3/3]`), step[0]!.name);
    }

    // The final stage's RUN: once per platform, emulated exactly for the foreign ones.
    const final = named(vs, /RUN uname -m > \/arch$/);
    assert.equal(final.length, targets.length);
    for (const t of targets) {
      const v = final.find((f) => f.name.startsWith(`[${t.platform} `));
      assert.ok(v, `final RUN for ${t.platform}`);
      assert.equal(v.starts, 1);
      assert.equal(v.emulated, t.platform !== "linux/amd64", v.name);
    }
    assert.ok(
      vs.every((v) => v.starts <= 1 && !v.cached && v.error === undefined),
      "nothing ran twice, nothing was cached, nothing failed",
    );

    for (const t of targets) {
      const rootfs = await unpackPlatform(`oci:${out}`, t.spec, dir, join(dir, `bundle-${t.arch}`));
      const read = (f: string) => readFile(join(rootfs, f), "utf8");
      assert.equal(await read("b"), "building\n", t.platform);
      assert.equal(await read("t"), `${t.arch}\n`, t.platform);
      assert.equal(await read("arch"), `${t.uname}\n`, t.platform);
    }
  } finally {
    await removeTree(dir);
  }
}

test("a $BUILDPLATFORM stage shared by two platforms runs once, natively", () =>
  checkSharedStage([amd64, arm64]));

// the build platform last: which target comes first must not matter
test("a $BUILDPLATFORM stage shared by three platforms runs once, natively", () =>
  checkSharedStage([armv7, arm64, amd64]));
