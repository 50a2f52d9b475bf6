// The state dir's metadata database across real processes: tags written by several processes
// at once are all kept (index.json too), cache-mount sharing modes hold between processes and
// a SIGKILLed holder blocks nobody, a version-0 state dir is migrated, a newer one refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { BuildCache } from "../../src/cache/index.js";
import { ContentStore, refNameAnnotation } from "../../src/content/index.js";
import { CacheMounts, type CacheMountRequest } from "../../src/engine/cachemounts.js";
import { KilnError } from "../../src/errors.js";
import { LAYOUT_VERSION, MetadataStore } from "../../src/metadata/index.js";

const src = (p: string) =>
  JSON.stringify(fileURLToPath(new URL(`../../src/${p}`, import.meta.url)));

/** A node process running an ES module script (sources through tsx). */
function node(script: string): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the first stdout line of a child (rejects if it exits first). */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("\n")) resolve(out.slice(0, out.indexOf("\n")));
    });
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    child.once("exit", (code) => {
      reject(new Error(`child exited (${code}) before a line: ${err}`));
    });
  });
}

/** Resolves with the exit code (call it before the child can exit; stderr goes to ours). */
function exited(child: ChildProcess): Promise<number | null> {
  child.stderr?.pipe(process.stderr);
  return new Promise((resolve) => child.once("close", resolve));
}

async function tempRoot(name: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `kiln-metadata-${name}-`));
}

test("tags written by 4 processes at once are all kept, in the database and index.json", async () => {
  const root = await tempRoot("tags");
  try {
    const perProcess = 25;
    const script = (p: number) => `
      import { ContentStore } from ${src("content/index.ts")};
      import { MetadataStore } from ${src("metadata/index.ts")};
      const metadata = MetadataStore.open(${JSON.stringify(root)});
      const store = await ContentStore.open(${JSON.stringify(join(root, "content"))}, metadata);
      for (let i = 0; i < ${perProcess}; i++) {
        const blob = await store.putBytes(Buffer.from("image ${p}-" + i));
        await store.addToIndex(
          { mediaType: "application/vnd.oci.image.manifest.v1+json", ...blob },
          "local/app:${p}-" + i,
        );
      }`;
    const codes = await Promise.all([0, 1, 2, 3].map((p) => exited(node(script(p)))));
    assert.deepEqual(codes, [0, 0, 0, 0]);

    const want = [0, 1, 2, 3].flatMap((p) =>
      Array.from({ length: perProcess }, (_, i) => `local/app:${p}-${i}`),
    );
    const store = await ContentStore.open(join(root, "content"), MetadataStore.open(root));
    const names = (await store.readIndex()).manifests.map(
      (m) => m.annotations?.[refNameAnnotation],
    );
    assert.deepEqual([...names].sort(), [...want].sort());
    const mirror = JSON.parse(await readFile(join(root, "content", "index.json"), "utf8")) as {
      manifests: { annotations: Record<string, string> }[];
    };
    assert.deepEqual(
      mirror.manifests.map((m) => m.annotations[refNameAnnotation]).sort(),
      [...want].sort(),
    );
    // a tag moves to a new digest: one entry of that name, pointing at the new one
    const blob = await store.putBytes(Buffer.from("moved"));
    await store.addToIndex(
      { mediaType: "application/vnd.oci.image.manifest.v1+json", ...blob },
      "local/app:0-0",
    );
    const entries = (await store.readIndex()).manifests.filter(
      (m) => m.annotations?.[refNameAnnotation] === "local/app:0-0",
    );
    assert.deepEqual(
      entries.map((m) => m.digest),
      [blob.digest],
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("cache mounts: locked excludes other processes, a SIGKILLed holder blocks nobody", async () => {
  const root = await tempRoot("mounts");
  try {
    const dir = join(root, "cache-mounts");
    await mkdir(dir);
    const request = (sharing: CacheMountRequest["sharing"], user = "linux/amd64") =>
      ({ id: "apt", sharing, mode: 0o755, uid: 0, gid: 0, user }) satisfies CacheMountRequest;
    const holder = (sharing: string) =>
      node(`
      import { CacheMounts } from ${src("engine/cachemounts.ts")};
      import { MetadataStore } from ${src("metadata/index.ts")};
      const mounts = new CacheMounts(${JSON.stringify(dir)}, MetadataStore.open(${JSON.stringify(root)}), () => {});
      const held = await mounts.acquire({ id: "apt", sharing: ${JSON.stringify(sharing)}, mode: 0o755, uid: 0, gid: 0, user: "linux/arm64" });
      process.stdout.write(held.dir + "\\n");
      setInterval(() => {}, 1000);`);
    const warnings: string[] = [];
    const mounts = new CacheMounts(dir, MetadataStore.open(root), (m) => warnings.push(m));

    // another process holds it locked: this one's locked and shared requests wait…
    const child = holder("locked");
    const lockedDir = await firstLine(child);
    let got: string | undefined;
    const waiting = mounts.acquire(request("locked")).then((h) => {
      got = h.dir;
      return h;
    });
    const sharedWaiting = mounts.acquire(request("shared"));
    // …while a private request gets a directory of its own at once
    const priv = await mounts.acquire(request("private"));
    assert.notEqual(priv.dir, lockedDir);
    priv.release();
    assert.equal(got, undefined, "a locked cache held by another process is not handed out");

    // …until the holder dies without releasing (SIGKILL): its hold dies with it, and the two
    // waiting requests get the directory, one after the other in whichever order they poll
    // (each releases it at once: a shared hold would keep the locked request waiting)
    const childGone = exited(child);
    child.kill("SIGKILL");
    await childGone;
    const granted: string[] = [];
    const useOnce = (p: Promise<{ dir: string; release: () => void }>) =>
      p.then((h) => {
        granted.push(h.dir);
        h.release();
      });
    await Promise.all([useOnce(waiting), useOnce(sharedWaiting)]);
    assert.deepEqual(granted, [lockedDir, lockedDir]);
    assert.equal(got, lockedDir);
    const shared = await mounts.acquire(request("shared"));
    assert.equal(shared.dir, lockedDir);

    // shared: another process shares it at once, and the concurrent use is warned about
    const other = holder("shared");
    assert.equal(await firstLine(other), lockedDir);
    const second = await mounts.acquire(request("shared"));
    assert.equal(second.dir, lockedDir);
    assert.ok(
      warnings.some((w) => w.includes("linux/arm64") && w.includes("sharing=shared")),
      warnings.join("\n"),
    );
    const otherGone = exited(other);
    other.kill("SIGKILL");
    await otherGone;
    shared.release();
    second.release();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("a version-0 state dir is migrated once; a newer layout is refused", async () => {
  const root = await tempRoot("migrate");
  try {
    const digest = `sha256:${"a".repeat(64)}`;
    await mkdir(join(root, "content"), { recursive: true });
    await writeFile(
      join(root, "content", "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest,
            size: 10,
            annotations: { [refNameAnnotation]: "docker.io/local/old:1" },
          },
        ],
      }),
    );
    await mkdir(join(root, "cache", "results"), { recursive: true });
    await mkdir(join(root, "cache", "layer-blobs"), { recursive: true });
    const key = "b".repeat(64);
    await writeFile(
      join(root, "cache", "results", `${key}.json`),
      JSON.stringify({ layers: [{ snapshot: "exec-1" }] }),
    );
    await writeFile(join(root, "cache", "results", "torn.json"), "{");
    const blob = { digest, size: 10, mediaType: "application/x", diffID: digest };
    await writeFile(join(root, "cache", "layer-blobs", "exec-1.gzip.json"), JSON.stringify(blob));
    await writeFile(join(root, "lock-build-1-1-00000000"), "");

    const metadata = MetadataStore.open(root);
    const store = await ContentStore.open(join(root, "content"), metadata);
    assert.deepEqual(
      (await store.readIndex()).manifests.map((m) => [
        m.digest,
        m.annotations?.[refNameAnnotation],
      ]),
      [[digest, "docker.io/local/old:1"]],
    );
    const cache = new BuildCache(metadata, () => Promise.resolve(true));
    assert.deepEqual(await cache.load(`sha256:${key}`), {
      layers: [{ snapshot: "exec-1", blob }],
    });
    assert.deepEqual(await cache.load(`sha256:torn`), undefined);
    assert.deepEqual(await readdir(join(root, "cache")), [], "the version-0 record files are gone");
    assert.ok(!(await readdir(root)).some((n) => n.startsWith("lock-")));

    // a dir written by a newer kiln
    const newer = await tempRoot("newer");
    try {
      const db = new Database(join(newer, "metadata.db"));
      db.pragma(`user_version = ${LAYOUT_VERSION + 1}`);
      db.close();
      assert.throws(
        () => MetadataStore.open(newer),
        (e: unknown) => e instanceof KilnError && e.code === "E_STATE_VERSION",
      );
    } finally {
      await rm(newer, { recursive: true, force: true });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
