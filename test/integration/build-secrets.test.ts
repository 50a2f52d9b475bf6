// Build secrets reach the RUN that mounts them (as a file and as an environment variable) and
// nothing else: not a blob, not the cache, not a snapshot, not the progress output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import {
  kiln,
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();

/** A file's bytes, gunzipped when it is gzip (layer blobs). */
async function plainBytes(path: string): Promise<Buffer> {
  const head = await readFile(path);
  if (head[0] !== 0x1f || head[1] !== 0x8b) return head;
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(path).pipe(createGunzip())) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Files under `dir` that contain `needle`, as stored (grep -r, binary files as text). */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const out = await run("sh", ["-c", 'grep -rlaF -D skip -- "$1" "$2" || true', "sh", needle, dir]);
  return out.split("\n").filter((l) => l !== "");
}

test("a secret is used by its RUN and stored nowhere", async () => {
  const dir = await tempDir("secrets");
  try {
    const secret = `kiln-secret-${randomBytes(16).toString("hex")}`;
    const sum = createHash("sha256").update(secret).digest("hex");
    const secretFile = join(dir, "tok.txt");
    await writeFile(secretFile, secret);
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null && echo ok > /ok
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /file.sum
RUN --mount=type=secret,id=tok,env=TOK printf %s "$TOK" | sha256sum | cut -c1-64 > /env.sum
`,
    });
    const root = join(dir, "root");
    const out = join(dir, "out");
    const r = await kilnOk(
      ["build", "--secret", `id=tok,src=${secretFile}`, "--output", `type=local,dest=${out}`, "."],
      { root, cwd: ctx },
    );
    assert.equal(await readFile(join(out, "ok"), "utf8"), "ok\n");
    assert.equal(await readFile(join(out, "file.sum"), "utf8"), `${sum}\n`, "file secret");
    assert.equal(await readFile(join(out, "env.sum"), "utf8"), `${sum}\n`, "env= secret");

    assert.ok(!r.stderr.includes(secret), "the secret is not in the progress output");
    assert.ok(!r.stdout.includes(secret));
    const blobsDir = join(root, "content", "blobs", "sha256");
    const blobs = await readdir(blobsDir);
    assert.ok(blobs.length >= 4, "layers, configs and manifests were stored");
    for (const b of blobs) {
      const bytes = await plainBytes(join(blobsDir, b));
      assert.ok(!bytes.includes(secret), `blob ${b} holds the secret`);
    }
    assert.deepEqual(await filesContaining(join(root, "cache"), secret), [], "build cache");
    assert.deepEqual(await filesContaining(root, secret), [], "anything in the state directory");
    assert.deepEqual(await filesContaining(out, secret), [], "the exported files");
  } finally {
    await removeTree(dir);
  }
});

test("a required secret that is not given fails the build, naming it", async () => {
  const dir = await tempDir("nosecret");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok
`,
    });
    const r = await kiln(["build", "."], { root: join(dir, "root"), cwd: ctx });
    assert.notEqual(r.code, 0);
    const error = r.messages.find((l) => l.startsWith("error: "));
    assert.match(error ?? "", /secret tok is required/, r.messages.join("\n"));
    assert.match(
      r.messages.find((l) => l.startsWith("hint: ")) ?? "",
      /--secret id=tok/,
      r.messages.join("\n"),
    );
  } finally {
    await removeTree(dir);
  }
});
