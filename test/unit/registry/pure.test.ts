import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { KilnError } from "../../../src/errors.js";
import {
  MediaType,
  appendManifests,
  emptyIndex,
  type Descriptor,
  type OciPlatform,
} from "../../../src/oci/index.js";
import {
  credentialKey,
  credentialsFromEntry,
  dockerCredentials,
  formatRef,
  matchingManifests,
  parseChallenges,
  parseDockerConfig,
  selectPlatform,
} from "../../../src/registry/index.js";

test("parseChallenges: bearer with quoted params containing commas", () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"',
    ),
    [
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:samalba/my-app:pull,push",
        },
      },
    ],
  );
});

test("parseChallenges: several challenges, token values, escapes, case", () => {
  assert.deepEqual(
    parseChallenges(
      'Basic realm="Registry Realm", BEARER Realm=http://x/t , error="invalid\\"token"',
    ),
    [
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: "http://x/t", error: 'invalid"token' } },
    ],
  );
  assert.deepEqual(parseChallenges(""), []);
  assert.deepEqual(parseChallenges("Negotiate"), [{ scheme: "negotiate", params: {} }]);
});

test("docker config: keys normalised, auth decoded, identity and registry tokens", () => {
  const cfg = parseDockerConfig(
    JSON.stringify({
      auths: {
        "https://index.docker.io/v1/": { auth: Buffer.from("hubuser:hub:pass").toString("base64") },
        "https://reg.example:5000/v2/": { identitytoken: "refresh-me" },
        "reg2.example": { registrytoken: "bearer-me" },
        "reg3.example": { username: "u", password: "p" },
        "reg4.example": {},
      },
      credsStore: "desktop",
      credHelpers: { "gcr.io": "gcloud", "docker.io": "hubhelper" },
    }),
  );
  assert.deepEqual(Object.keys(cfg.auths).sort(), [
    "https://index.docker.io/v1/",
    "reg.example:5000",
    "reg2.example",
    "reg3.example",
    "reg4.example",
  ]);
  assert.equal(cfg.credsStore, "desktop");
  assert.deepEqual(cfg.credHelpers, {
    "gcr.io": "gcloud",
    "https://index.docker.io/v1/": "hubhelper",
  });
  assert.equal(credentialKey("docker.io"), "https://index.docker.io/v1/");
  assert.equal(credentialKey("reg.example:5000"), "reg.example:5000");
  assert.deepEqual(credentialsFromEntry(cfg.auths[credentialKey("docker.io")], "docker.io"), {
    username: "hubuser",
    password: "hub:pass",
  });
  assert.deepEqual(credentialsFromEntry(cfg.auths["reg.example:5000"], "x"), {
    identityToken: "refresh-me",
  });
  assert.deepEqual(credentialsFromEntry(cfg.auths["reg2.example"], "x"), {
    registryToken: "bearer-me",
  });
  assert.deepEqual(credentialsFromEntry(cfg.auths["reg3.example"], "x"), {
    username: "u",
    password: "p",
  });
  assert.equal(credentialsFromEntry(cfg.auths["reg4.example"], "x"), undefined);
});

test("docker config errors never contain the secret", () => {
  const secret = "s3cr3t-no-colon";
  assert.throws(
    () => credentialsFromEntry({ auth: Buffer.from(secret).toString("base64") }, "reg.example"),
    (e: unknown) =>
      e instanceof KilnError && e.code === "E_DOCKER_CONFIG" && !e.message.includes(secret),
  );
  assert.throws(
    () => parseDockerConfig(`{"auths": {"x": {"auth": "${secret}"`),
    (e: unknown) => e instanceof KilnError && !e.message.includes(secret),
  );
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-dockercfg-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("dockerCredentials: credHelpers and credsStore run docker-credential-<name>", async () => {
  const bin = join(dir, "bin");
  await writeFile(join(dir, "placeholder"), "");
  await import("node:fs/promises").then((fs) => fs.mkdir(bin, { recursive: true }));
  // A real helper program speaking the protocol: server URL on stdin, JSON on stdout.
  await writeFile(
    join(bin, "docker-credential-kilntest"),
    `#!/bin/sh
read url
case "$url" in
  helped.example) echo '{"ServerURL":"helped.example","Username":"alice","Secret":"wonder"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"refresh"}' ;;
  broken.example) echo 'garbage' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
  );
  await chmod(join(bin, "docker-credential-kilntest"), 0o755);
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({
      auths: { "fallback.example": { auth: Buffer.from("bob:builder").toString("base64") } },
      credsStore: "kilntest",
      credHelpers: { "missing.example": "nosuchhelper" },
    }),
  );
  const env = { PATH: `${bin}:/usr/bin:/bin`, DOCKER_CONFIG: dir };
  const provider = dockerCredentials({ env });
  assert.deepEqual(await provider("helped.example"), { username: "alice", password: "wonder" });
  assert.deepEqual(await provider("token.example"), { identityToken: "refresh" });
  assert.deepEqual(await provider("fallback.example"), { username: "bob", password: "builder" });
  assert.equal(await provider("nothing.example"), undefined);
  await assert.rejects(
    provider("broken.example"),
    (e: unknown) => e instanceof KilnError && e.code === "E_CREDENTIAL_HELPER",
  );
  await assert.rejects(
    provider("missing.example"),
    (e: unknown) =>
      e instanceof KilnError && /docker-credential-nosuchhelper is not installed/.test(e.message),
  );
  assert.equal(await dockerCredentials({ configDir: join(dir, "absent") })("x"), undefined);
});

function entry(platform: OciPlatform | undefined, n: number): Descriptor {
  const d: Descriptor = {
    mediaType: MediaType.ociManifest,
    digest: `sha256:${String(n).padStart(64, "0")}`,
    size: n,
  };
  if (platform !== undefined) d.platform = platform;
  return d;
}

const index = appendManifests(emptyIndex(), [
  entry({ os: "linux", architecture: "386" }, 1),
  entry({ os: "linux", architecture: "arm", variant: "v6" }, 2),
  entry({ os: "linux", architecture: "arm", variant: "v7" }, 3),
  entry({ os: "linux", architecture: "amd64" }, 4),
  entry({ os: "unknown", architecture: "unknown" }, 5),
  entry(undefined, 6),
  entry({ os: "linux", architecture: "amd64" }, 7),
]);

test("selectPlatform: exact match first, first of equals wins", () => {
  assert.equal(selectPlatform(index, { os: "linux", architecture: "amd64" }).size, 4);
  assert.deepEqual(
    matchingManifests(index, { os: "linux", architecture: "amd64" }).map((d) => d.size),
    [4, 7, 1],
  );
});

test("selectPlatform: BuildKit fallbacks (arm64 → arm/v7, arm/v7 → v6, amd64 → 386)", () => {
  assert.equal(selectPlatform(index, { os: "linux", architecture: "arm64" }).size, 3);
  assert.deepEqual(
    matchingManifests(index, { os: "linux", architecture: "arm64" }).map((d) => d.size),
    [3, 2],
  );
  assert.equal(selectPlatform(index, { os: "linux", architecture: "arm", variant: "v7" }).size, 3);
  assert.equal(selectPlatform(index, { os: "linux", architecture: "arm", variant: "v6" }).size, 2);
  const only386 = appendManifests(emptyIndex(), [entry({ os: "linux", architecture: "386" }, 1)]);
  assert.equal(selectPlatform(only386, { os: "linux", architecture: "amd64" }).size, 1);
  // Normalisation: aarch64 is arm64.
  assert.equal(selectPlatform(index, { os: "linux", architecture: "aarch64" }).size, 3);
});

test("selectPlatform: no match lists what is available", () => {
  assert.throws(
    () => selectPlatform(index, { os: "linux", architecture: "s390x" }, "reg/app:1"),
    (e: unknown) =>
      e instanceof KilnError &&
      e.code === "E_PLATFORM_NOT_FOUND" &&
      /reg\/app:1 has no manifest for linux\/s390x/.test(e.message) &&
      e.message.includes("linux/arm/v7") &&
      !e.message.includes("unknown"),
  );
  assert.throws(
    () => selectPlatform(index, { os: "windows", architecture: "amd64" }),
    /E_PLATFORM|no manifest/,
  );
});

test("formatRef", () => {
  assert.equal(formatRef({ registry: "r:5000", repository: "a/b" }, "v1"), "r:5000/a/b:v1");
  const d = `sha256:${"a".repeat(64)}`;
  assert.equal(formatRef({ registry: "r", repository: "a" }, d), `r/a@${d}`);
});
