// kiln's SBOM scanner on a hand-made root filesystem: real dpkg stanzas from this machine's
// database (versions checked with dpkg-query), distroless status.d, an apk db, npm and Python
// packages, and a real Go binary (its Go version checked against the Debian package's
// Built-Using); the SPDX document validates against the SPDX 2.3 schema.
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { execFileSync } from "node:child_process";
import { scanPackages, spdxDocument } from "../../../src/attest/index.js";
import { parseBuildInfo } from "../../../src/attest/sbom/golang.js";
import { normalizeLicense } from "../../../src/attest/sbom/licenses.js";
import { attestSchemaErrors } from "./attest-schema.js";

let root = "";
const hostDebs = ["bash", "coreutils", "libc6"];
const dpkgVersion = (pkg: string): string =>
  execFileSync("dpkg-query", ["-W", "-f", "${Version}", pkg], { encoding: "utf8" });

/** The stanza of `pkg` from the machine's dpkg database, as written there. */
async function hostStanza(pkg: string): Promise<string> {
  const all = (await readFile("/var/lib/dpkg/status", "utf8")).split(/\n\n+/);
  const s = all.find((x) => x.startsWith(`Package: ${pkg}\n`));
  assert.ok(s, `${pkg} is installed on this machine`);
  return s;
}

async function put(path: string, body: string | Buffer): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), body);
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "kiln-sbom-"));
  await put("etc/os-release", 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n');
  const removed =
    "Package: oldpkg\nStatus: deinstall ok config-files\nVersion: 1.0\nArchitecture: amd64\n";
  await put(
    "var/lib/dpkg/status",
    [...(await Promise.all(hostDebs.map(hostStanza))), removed].join("\n\n") + "\n",
  );
  await put(
    "var/lib/dpkg/status.d/tzdata",
    "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
  );
  await put("var/lib/dpkg/status.d/tzdata.md5sums", "d41d8cd98f00b204e9800998ecf8427e  usr/x\n");
  await put(
    "lib/apk/db/installed",
    "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nT:the musl c library\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n",
  );
  await put(
    "app/node_modules/left-pad/package.json",
    JSON.stringify({ name: "left-pad", version: "1.3.0", license: "WTFPL" }),
  );
  await put(
    "app/node_modules/@types/node/package.json",
    JSON.stringify({ name: "@types/node", version: "20.1.0", license: "MIT" }),
  );
  // a package.json inside a package is not a package
  await put(
    "app/node_modules/left-pad/lib/package.json",
    JSON.stringify({ name: "inner", version: "0.0.1" }),
  );
  await put("app/package.json", JSON.stringify({ name: "the-app", version: "1.0.0" }));
  await put(
    "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
    "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: Python HTTP for Humans.\nLicense: Apache 2.0\n\nbody text\nName: not-a-header\n",
  );
  await put(
    "usr/lib/python3/dist-packages/Six-1.16.0.egg-info/PKG-INFO",
    "Metadata-Version: 1.2\nName: Six\nVersion: 1.16.0\nLicense: MIT\n",
  );
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await copyFile("/usr/bin/umoci", join(root, "usr/bin/umoci"));
});
after(() => rm(root, { recursive: true, force: true }));

test("the scanner finds every package database with name, version and purl", async () => {
  const found = await scanPackages(root);
  const by = (eco: string, name: string) =>
    found.find((p) => p.ecosystem === eco && p.name === name);
  for (const pkg of hostDebs) {
    const p = by("deb", pkg);
    assert.ok(p, pkg);
    assert.equal(p.version, dpkgVersion(pkg));
    assert.match(p.purl, new RegExp(`^pkg:deb/debian/${pkg}@.*[?&]distro=debian-12`));
    assert.equal(p.location, "/var/lib/dpkg/status");
  }
  assert.equal(by("deb", "oldpkg"), undefined, "a removed package is not installed");
  assert.equal(by("deb", "tzdata")?.location, "/var/lib/dpkg/status.d/tzdata");
  assert.equal(found.filter((p) => p.name.includes("md5")).length, 0);
  assert.equal(
    by("apk", "musl")?.purl,
    "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12",
  );
  assert.equal(by("apk", "busybox")?.license, "GPL-2.0-only");
  assert.equal(by("npm", "left-pad")?.purl, "pkg:npm/left-pad@1.3.0");
  assert.equal(by("npm", "@types/node")?.purl, "pkg:npm/%40types/node@20.1.0");
  assert.equal(by("npm", "inner"), undefined);
  assert.equal(by("npm", "the-app"), undefined);
  assert.equal(by("python", "requests")?.purl, "pkg:pypi/requests@2.31.0");
  assert.equal(by("python", "Six")?.purl, "pkg:pypi/six@1.16.0");
  // Debian builds Go without modules: the binary's build info names the Go release only
  const goRelease = /golang-1\.\d+ \(= (1\.\d+\.\d+)-/.exec(
    execFileSync("dpkg-query", ["-W", "-f", "${Built-Using}", "umoci"], { encoding: "utf8" }),
  )?.[1];
  assert.ok(goRelease);
  assert.equal(by("go", "stdlib")?.purl, `pkg:golang/stdlib@${goRelease}`);
  assert.equal(by("go", "stdlib")?.location, "/usr/bin/umoci");
});

test("the SPDX 2.3 document: a root package that CONTAINS each package, licences as expressions", async () => {
  const doc = spdxDocument(await scanPackages(root), { name: "reg/app:1", created: new Date(0) });
  assert.equal(attestSchemaErrors("spdx-2.3", doc), "");
  const packages = doc.packages as Record<string, unknown>[];
  const pkg = (name: string) => packages.find((p) => p.name === name)!;
  assert.equal(pkg("left-pad").licenseDeclared, "WTFPL");
  assert.equal(pkg("requests").licenseDeclared, "Apache-2.0");
  assert.equal(pkg("bash").licenseDeclared, "NOASSERTION");
  const rels = doc.relationships as {
    spdxElementId: string;
    relationshipType: string;
    relatedSpdxElement: string;
  }[];
  const top = packages[0]!;
  assert.equal(top.primaryPackagePurpose, "CONTAINER");
  assert.deepEqual(rels[0], {
    spdxElementId: "SPDXRef-DOCUMENT",
    relationshipType: "DESCRIBES",
    relatedSpdxElement: top.SPDXID,
  });
  assert.equal(rels.filter((r) => r.relationshipType === "CONTAINS").length, packages.length - 1);
  // the same scan gives the same bytes (namespace derived from the content)
  const again = spdxDocument(await scanPackages(root), { name: "reg/app:1", created: new Date(0) });
  assert.equal(JSON.stringify(again), JSON.stringify(doc));
});

test("licences: SPDX ids and expressions pass, known spellings map, the rest become LicenseRefs", () => {
  assert.equal(normalizeLicense("MIT")?.expression, "MIT");
  assert.equal(normalizeLicense("(mit OR apache-2.0)")?.expression, "(MIT OR Apache-2.0)");
  assert.equal(normalizeLicense("MIT BSD-2-Clause")?.expression, "MIT AND BSD-2-Clause");
  assert.equal(
    normalizeLicense("GPL-2.0-or-later WITH Classpath-exception-2.0")?.expression,
    "GPL-2.0-or-later WITH Classpath-exception-2.0",
  );
  assert.equal(normalizeLicense("MIT License")?.expression, "MIT");
  assert.deepEqual(normalizeLicense("Some Custom Terms v2"), {
    expression: "LicenseRef-Some-Custom-Terms-v2",
    extracted: [
      { licenseId: "LicenseRef-Some-Custom-Terms-v2", extractedText: "Some Custom Terms v2" },
    ],
  });
  assert.match(normalizeLicense("MIT AND")!.expression, /^LicenseRef-/);
  assert.equal(normalizeLicense(""), undefined);
  assert.equal(normalizeLicense("UNKNOWN"), undefined);
});

test("Go build info: modules, replacements and the Go version from the inline form", () => {
  const sentinel = Buffer.alloc(16, 0x41).toString("latin1");
  const mod =
    sentinel +
    "path\texample.com/cmd/app\nmod\texample.com/app\tv1.2.3\th1:x=\n" +
    "dep\tgolang.org/x/sys\tv0.1.0\th1:y=\ndep\texample.com/old\tv1.0.0\n=>\texample.com/new\tv2.0.0\th1:z=\n" +
    "build\t-compiler=gc\n" +
    sentinel;
  const header = Buffer.alloc(32);
  Buffer.from("\xff Go buildinf:", "latin1").copy(header);
  header[14] = 8;
  header[15] = 2;
  const varint = (n: number): Buffer => Buffer.from(n < 128 ? [n] : [(n & 0x7f) | 0x80, n >> 7]);
  const real = parseBuildInfo(
    Buffer.concat([
      header,
      varint(8),
      Buffer.from("go1.22.1"),
      varint(mod.length),
      Buffer.from(mod, "latin1"),
    ]),
  );
  assert.ok(real);
  assert.equal(real.goVersion, "go1.22.1");
  assert.deepEqual(real.main, { path: "example.com/app", version: "v1.2.3" });
  assert.deepEqual(real.deps, [
    { path: "golang.org/x/sys", version: "v0.1.0" },
    { path: "example.com/new", version: "v2.0.0" },
  ]);
  assert.equal(parseBuildInfo(Buffer.from("not build info at all, not at all")), undefined);
});
