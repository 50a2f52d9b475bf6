// `--build-context name=oci-layout://DIR[:TAG][@DIGEST]` (issue 15): a two-platform image that
// kiln wrote as an OCI layout directory becomes `FROM base`, `COPY --from=base` and
// `RUN --mount=from=…` of a two-platform build, picked per target platform; the result is pushed
// (its base layers come from the layout, not the registry) and checked with skopeo, umoci and runc.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  kiln,
  kilnOk,
  removeTree,
  runInBundle,
  tempDir,
  testRegistry,
  unpackPlatform,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
let dir: string;
let layout: string;
let baseDigest: string;
const opts = () => ({ root: join(dir, "root"), cwd: dir });

interface Index {
  manifests: { digest: string; platform?: { architecture: string }; annotations?: object }[];
}
const blob = async (root: string, digest: string): Promise<Buffer> =>
  readFile(join(root, "blobs", "sha256", digest.slice("sha256:".length)));

before(async () => {
  dir = await tempDir("oci-layout");
  layout = join(dir, "layout");
  const base = await writeContext(join(dir, "base"), {
    Dockerfile: `FROM ${reg}/base/busybox:latest\nRUN uname -m > /base-arch\nENV FROM_BASE=yes\nWORKDIR /srv\n`,
  });
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=oci,dest=${layout},tar=false`,
      base,
    ],
    opts(),
  );
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as Index;
  assert.equal(index.manifests.length, 1);
  baseDigest = index.manifests[0]!.digest;
  // a second, tagged image in the same layout: tags now have to be told apart
  await run("skopeo", [
    "copy",
    "--quiet",
    "--all",
    "--src-tls-verify=false",
    `docker://${reg}/base/busybox:riscv64`,
    `oci:${layout}:tools`,
  ]);
});

after(async () => {
  await removeTree(dir);
});

test("oci-layout:// contexts by digest and by tag in a two-platform build", async () => {
  const ctx = await writeContext(join(dir, "app"), {
    Dockerfile: [
      "FROM base",
      'RUN echo "$FROM_BASE $(pwd) $(uname -m) $(cat /base-arch)" > /result',
      "COPY --from=base /base-arch /copied",
      "RUN --mount=from=tools,target=/tools cp /tools/bin/busybox /tools-busybox",
      "",
    ].join("\n"),
  });
  const name = `${reg}/test/oci-layout:multi`;
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/amd64,linux/arm64",
      "--build-context",
      `base=oci-layout://${layout}@${baseDigest}`,
      "--build-context",
      `tools=oci-layout://${layout}:tools`,
      "-t",
      name,
      "--push",
      ctx,
    ],
    opts(),
  );
  const pushed = JSON.parse(
    await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${name}`]),
  ) as Index;
  const archs = pushed.manifests.flatMap((m) => (m.platform ? [m.platform.architecture] : []));
  assert.deepEqual(archs.filter((a) => a !== "unknown").sort(), ["amd64", "arm64"]);

  for (const [arch, uname] of [
    ["amd64", "x86_64"],
    ["arm64", "aarch64"],
  ] as const) {
    const bundle = join(dir, `bundle-${arch}`);
    const rootfs = await unpackPlatform(`docker://${name}`, { architecture: arch }, dir, bundle);
    // RUN ran on the layout's image for this platform, with its ENV and WORKDIR
    assert.equal(await readFile(join(rootfs, "result"), "utf8"), `yes /srv ${uname} ${uname}\n`);
    assert.equal(await readFile(join(rootfs, "copied"), "utf8"), `${uname}\n`);
    // the tools image (riscv64 only) was mounted whatever the target: ELF machine 0xf3
    assert.equal((await readFile(join(rootfs, "tools-busybox"))).readUInt16LE(18), 0xf3);
    // the image config inherits the base's ENV and WORKDIR: the container runs there
    assert.equal(
      await runInBundle(bundle, ["sh", "-c", 'echo "$FROM_BASE $(pwd) $(cat /base-arch)"']),
      `yes /srv ${uname}\n`,
    );
  }
});

test("provenance names an oci-layout base as pkg:oci/NAME with the layout digest", async () => {
  const ctx = await writeContext(join(dir, "prov"), { Dockerfile: "FROM base\nRUN true\n" });
  const out = join(dir, "prov-out");
  await kilnOk(
    [
      "build",
      "--platform",
      "linux/arm64",
      "--build-context",
      `base=oci-layout://${layout}@${baseDigest}`,
      "--provenance",
      "mode=min",
      "-o",
      `type=oci,dest=${out},tar=false`,
      ctx,
    ],
    opts(),
  );
  const top = JSON.parse(await readFile(join(out, "index.json"), "utf8")) as Index;
  const index = JSON.parse((await blob(out, top.manifests[0]!.digest)).toString()) as Index;
  const att = index.manifests.find((m) => m.platform?.architecture === "unknown")!;
  const manifest = JSON.parse((await blob(out, att.digest)).toString()) as {
    layers: { digest: string }[];
  };
  const statement = JSON.parse((await blob(out, manifest.layers[0]!.digest)).toString()) as {
    predicate: { buildDefinition: { resolvedDependencies: unknown[] } };
  };
  assert.deepEqual(statement.predicate.buildDefinition.resolvedDependencies, [
    {
      uri: `pkg:oci/base?digest=${baseDigest}&platform=linux%2Farm64`,
      digest: { sha256: baseDigest.slice("sha256:".length) },
    },
  ]);
});

test("oci-layout:// errors name the context and the fix", async () => {
  const ctx = await writeContext(join(dir, "errs"), { Dockerfile: "FROM base\nRUN true\n" });
  await writeContext(join(dir, "not-a-layout"), { "readme.txt": "no index.json here\n" });
  const corrupt = join(dir, "corrupt");
  await cp(layout, corrupt, { recursive: true });
  // flip a byte of the amd64 image's last layer
  const index = JSON.parse((await blob(corrupt, baseDigest)).toString()) as Index;
  const amd64 = index.manifests.find((m) => m.platform?.architecture === "amd64")!;
  const manifest = JSON.parse((await blob(corrupt, amd64.digest)).toString()) as {
    layers: { digest: string }[];
  };
  const layer = join(corrupt, "blobs", "sha256", manifest.layers.at(-1)!.digest.slice(7));
  const bytes = await readFile(layer);
  const mid = bytes.length >> 1;
  bytes[mid] = bytes[mid]! ^ 0xff;
  await writeFile(layer, bytes);

  // a blob that is a symlink out of the layout (to the very same content) is not followed there
  const escaping = join(dir, "escaping");
  await cp(layout, escaping, { recursive: true });
  const amd64Manifest = join(escaping, "blobs", "sha256", amd64.digest.slice(7));
  await rm(amd64Manifest);
  await symlink(join(layout, "blobs", "sha256", amd64.digest.slice(7)), amd64Manifest);

  const absent = `sha256:${"0".repeat(64)}`;
  const cases: [string, string, RegExp][] = [
    ["linux/amd64", `oci-layout://${join(dir, "nowhere")}`, /"base".*nowhere is not a directory/],
    ["linux/amd64", `oci-layout://${join(dir, "not-a-layout")}`, /"base".*has no index\.json/],
    ["linux/amd64", `oci-layout://${layout}:v9`, /no image tagged "v9".*\(tags: tools\)/],
    ["linux/amd64", `oci-layout://${layout}@${absent}`, /"base".*0{64} is not in the layout/],
    ["linux/s390x", `oci-layout://${layout}@${baseDigest}`, /"base".*no manifest for linux\/s390x/],
    ["linux/amd64", `oci-layout://${corrupt}@${baseDigest}`, /"base".*blob sha256:\w+ is corrupt/],
    ["linux/amd64", `oci-layout://${escaping}@${baseDigest}`, /"base".*blob sha256:\w+ is missing/],
    ["linux/amd64", "oci-layout://x@sha256:123", /is not a digest/],
  ];
  for (const c of cases) {
    const [platform, value, why] = c;
    const r = await kiln(
      [
        "build",
        "--platform",
        platform,
        "--build-context",
        `base=${value}`,
        "-o",
        "type=tar,dest=/dev/null",
        ctx,
      ],
      // a fresh state dir each: blobs must be read from the layout, not found in kiln's store
      { root: join(dir, `root-errors-${cases.indexOf(c)}`), cwd: dir },
    );
    assert.notEqual(r.code, 0, value);
    assert.match(r.messages.join("\n"), why, r.stderr);
    assert.match(r.messages.join("\n"), /hint: /, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
  await rm(corrupt, { recursive: true });
  await rm(escaping, { recursive: true });
});
