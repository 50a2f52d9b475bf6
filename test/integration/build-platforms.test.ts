// Six platforms from one Dockerfile, pushed as one index; each image, pulled back and run with
// real runc (foreign ones through the host's binfmt), reports its CPU and its platform ARGs
// (issue 7). And a platform kiln cannot run fails with one line naming the platform and the fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  kiln,
  kilnOk,
  pathWithout,
  removeTree,
  runInBundle,
  tempDir,
  testRegistry,
  unpackPlatform,
  vertexRecords,
  writeContext,
  type PlatformSpec,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();

interface Target {
  platform: string;
  spec: PlatformSpec;
  uname: string;
  /** TARGETARCH TARGETVARIANT */
  args: string;
}

const targets: Target[] = [
  { platform: "linux/amd64", spec: { architecture: "amd64" }, uname: "x86_64", args: "amd64 " },
  { platform: "linux/arm64", spec: { architecture: "arm64" }, uname: "aarch64", args: "arm64 " },
  {
    platform: "linux/arm/v7",
    spec: { architecture: "arm", variant: "v7" },
    uname: "armv7l",
    args: "arm v7",
  },
  {
    platform: "linux/ppc64le",
    spec: { architecture: "ppc64le" },
    uname: "ppc64le",
    args: "ppc64le ",
  },
  { platform: "linux/s390x", spec: { architecture: "s390x" }, uname: "s390x", args: "s390x " },
  {
    platform: "linux/riscv64",
    spec: { architecture: "riscv64" },
    uname: "riscv64",
    args: "riscv64 ",
  },
];

const dockerfile = `FROM ${reg}/base/busybox
ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM
RUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH $TARGETVARIANT $BUILDPLATFORM" > /args
`;

test("six platforms: pushed as one index, each image runs as its own CPU", async () => {
  const dir = await tempDir("platforms");
  try {
    const ctx = await writeContext(join(dir, "ctx"), { Dockerfile: dockerfile });
    const name = `${reg}/e2e/five:1`;
    const r = await kilnOk(
      ["build", "--platform", targets.map((t) => t.platform).join(","), "-t", name, "--push", "."],
      { root: join(dir, "root"), cwd: ctx },
    );
    const runs = vertexRecords(r.events).filter((v) => v.name.includes("RUN uname"));
    assert.equal(runs.length, 6);
    for (const v of runs) assert.equal(v.emulated, !v.name.startsWith("[linux/amd64 "), v.name);

    const index = JSON.parse(
      await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${name}`]),
    ) as {
      manifests: {
        platform: { os: string; architecture: string; variant?: string };
        annotations?: Record<string, string>;
      }[];
    };
    assert.deepEqual(
      index.manifests
        .filter((m) => m.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest")
        .map((m) => m.platform),
      targets.map((t) => ({ os: "linux", ...t.spec })),
    );

    for (const t of targets) {
      const bundle = join(dir, `bundle-${t.platform.replace(/\//g, "-")}`);
      await unpackPlatform(`docker://${name}`, t.spec, dir, bundle);
      const out = await runInBundle(bundle, ["cat", "/arch", "/args"]);
      assert.equal(out, `${t.uname}\n${t.platform} ${t.args} linux/amd64\n`, t.platform);
    }
  } finally {
    await removeTree(dir);
  }
});

test("a platform with no emulator fails in one line that names it and the fix", async () => {
  const dir = await tempDir("noemu");
  try {
    const ctx = await writeContext(join(dir, "ctx"), { Dockerfile: dockerfile });
    // findEmulator searches PATH: this one has every program of the usual one except QEMU's
    const path = await pathWithout(join(dir, "bin"), /^(buildkit-)?qemu-/);
    const r = await kiln(["build", "--ignore-binfmt", "--platform", "linux/arm64", "."], {
      root: join(dir, "root"),
      cwd: ctx,
      path,
    });
    assert.notEqual(r.code, 0);
    const errors = r.messages.filter((l) => l.startsWith("error: "));
    assert.equal(errors.length, 1, r.messages.join("\n"));
    assert.match(errors[0]!, /linux\/arm64/);
    const hint = r.messages.find((l) => l.startsWith("hint: "));
    assert.ok(hint, r.messages.join("\n"));
    assert.match(hint, /apt-get install qemu-user-static/);
    assert.match(hint, /kiln binfmt --install arm64/);
    assert.ok(
      r.messages.every((l) => !/^\s+at /.test(l)),
      `no stack trace: ${r.messages.join("\n")}`,
    );
    assert.equal(r.messages.length, 2, `only the error and its hint: ${r.messages.join("\n")}`);
  } finally {
    await removeTree(dir);
  }
});

test("an exec format error names the program, the platform and the fix", async () => {
  const dir = await tempDir("enoexec");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
RUN printf 'echo hi\\n' > /x && chmod +x /x
RUN ["/x"]
`,
    });
    const r = await kiln(["build", "--platform", "linux/amd64", "."], {
      root: join(dir, "root"),
      cwd: ctx,
    });
    assert.notEqual(r.code, 0);
    const errors = r.messages.filter((l) => l.startsWith("error: "));
    assert.equal(errors.length, 1, r.messages.join("\n"));
    assert.match(errors[0]!, /exec format error: cannot run \/x for linux\/amd64: it is neither/);
    assert.match(r.messages.find((l) => l.startsWith("hint: ")) ?? "", /#!/);
    assert.equal(r.messages.length, 2, r.messages.join("\n"));
  } finally {
    await removeTree(dir);
  }
});
