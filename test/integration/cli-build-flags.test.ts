// `kiln build`'s surface through the real CLI: the help lists every flag with its meaning and
// none of commander's noise, docs/cli.md documents each of them, and flag conflicts end with
// one clear message (and a hint) before anything is built.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { repoRoot } from "../fixtures/exec.js";
import { collect, removeTree, startKiln, tempDir, writeContext } from "../fixtures/build-cli.js";

let dir = "";
let ctx = "";
const opts = () => ({ root: join(dir, "root"), cwd: dir });
const kiln = async (...args: string[]) => collect(await startKiln(args, opts()));

before(async () => {
  dir = await tempDir("cli-flags");
  ctx = await writeContext(join(dir, "ctx"), { Dockerfile: "FROM scratch\n" });
});
after(() => removeTree(dir));

test("build --help: every flag has a meaning, no '(default: [])', outputs explained", async () => {
  const r = await kiln("build", "--help");
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /default: \[\]/);
  const lines = r.stdout.split("\n");
  const flags = lines.filter((l) => /^ {2}(-\w, )?--[\w-]+/.test(l));
  assert.ok(flags.length >= 30, `only ${flags.length} flags`);
  for (const l of flags) {
    // the description starts on the flag's own line
    assert.match(l, /^ {2}\S.*\S {2,}\S/, `no description: ${l}`);
  }
  for (const t of ["image", "registry", "oci", "docker", "local", "tar"])
    assert.match(r.stdout, new RegExp(`^  type=${t} `, "m"));
  assert.match(r.stdout, /SOURCE_DATE_EPOCH/);
});

test("docs/cli.md documents every flag kiln build --help lists", async () => {
  const r = await kiln("build", "--help");
  const doc = await readFile(join(repoRoot, "docs", "cli.md"), "utf8");
  const names = [...r.stdout.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]!);
  for (const name of names.filter((n) => n !== "--help")) {
    assert.ok(
      doc.includes(`\`${name}`) || doc.includes(`, ${name}`),
      `${name} is not in docs/cli.md`,
    );
  }
});

const refusals: [string, string[], RegExp, RegExp][] = [
  ["an unknown flag", ["--frobnicate"], /unknown option '--frobnicate'/, /./],
  [
    "an unknown output type",
    ["-o", "type=zip,dest=x"],
    /unknown output type zip/,
    /image, registry, oci/,
  ],
  [
    "a misspelt output attribute",
    ["-o", "type=registry,name=r/a:1,compresion=zstd"],
    /no attribute "compresion"/,
    /compression/,
  ],
  ["--push without a name", ["--push"], /pushing needs an image name/, /-t/],
  [
    "two image outputs with different compression",
    ["-t", "r/a:1", "--push", "-o", "type=image,compression=zstd", "-o", "type=image,name=r/b:1"],
    /disagree on compression/,
    /one image per build/,
  ],
  [
    "two registry outputs pushing one name",
    ["-o", "type=registry,name=r/a:1", "-o", "type=registry,name=r/a:1,oci-mediatypes=true"],
    /r\/a:1 is pushed by two outputs/,
    /duplicate/,
  ],
  [
    "two outputs on stdout",
    ["-o", "-", "-o", "type=oci,dest=-"],
    /both write to stdout/,
    /dest file/,
  ],
  [
    "docker output for two platforms",
    ["--platform", "linux/amd64,linux/arm64", "-o", "type=docker,dest=x.tar"],
    /`docker load` tarball has one/,
    /--platform linux\/amd64.*type=oci/,
  ],
  [
    "a bad annotation type",
    ["--annotation", "layer:k=v"],
    /unknown annotation type "layer"/,
    /index-descriptor/,
  ],
  [
    "a bad SOURCE_DATE_EPOCH",
    ["--build-arg", "SOURCE_DATE_EPOCH=yesterday"],
    /SOURCE_DATE_EPOCH/,
    /seconds/,
  ],
  [
    "an unknown attestation type",
    ["--attest", "type=vex"],
    /unknown attestation type "vex"/,
    /type=provenance/,
  ],
  [
    "an SBOM generator image",
    ["--sbom", "generator=docker/buildkit-syft-scanner"],
    /no SBOM generator images/,
    /built-in scanner/,
  ],
];

for (const [what, args, message, hint] of refusals) {
  test(`refused: ${what}`, async () => {
    const r = await kiln("build", "--progress", "plain", ...args, ctx);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.split("\n");
    assert.ok(
      lines.some((l) => l.startsWith("error:") && message.test(l)),
      r.stderr,
    );
    if (what !== "an unknown flag")
      assert.match(lines.find((l) => l.startsWith("hint:")) ?? "", hint);
    assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
  });
}

test("build --check prints the findings and fails; a clean Dockerfile passes; nothing is built", async () => {
  const bad = await writeContext(join(dir, "check-bad"), {
    Dockerfile: "FROM scratch as base\nCMD run\n",
  });
  const r = await kiln("build", "--check", bad);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stdout,
    /^WARNING: FromAsCasing - 'as' and 'FROM' keywords' casing do not match$/m,
  );
  assert.match(r.stdout, /^WARNING: JSONArgsRecommended - /m);
  assert.match(r.stdout, /Check complete, 2 warnings have been found!\n$/);
  assert.match(r.stderr, /error: 2 Dockerfile checks failed/);
  const good = await kiln("build", "--call", "check", ctx);
  assert.equal(good.code, 0, good.stderr);
  assert.equal(good.stdout, "Check complete, no warnings found.\n");
});
