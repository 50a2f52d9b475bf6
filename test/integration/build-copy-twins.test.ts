// Identical COPY steps of several platforms: the first makes the layer, the others stack it on
// their own base (one copy, one snapshot, one blob), unless what the copy writes into differs
// between the bases (a directory's mode, the owner a --chown names), when each copies for
// itself and gets what a copy onto its own base gives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { kilnOk, removeTree, tempDir, testRegistry, writeContext } from "../fixtures/build-cli.js";

const reg = testRegistry();

/** Ids of the committed snapshots COPY steps made in a state dir. */
async function copySnapshots(root: string): Promise<string[]> {
  const dir = join(root, "snapshots", "snapshots");
  const ids: string[] = [];
  for (const key of await readdir(dir)) {
    const meta = await readFile(join(dir, key, "meta.json"), "utf8").catch(() => undefined);
    const id = meta === undefined ? undefined : (JSON.parse(meta) as { id: string }).id;
    if (id?.startsWith("file-")) ids.push(id);
  }
  return ids;
}

const PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7"];

test("a COPY every platform makes alike is made once and stacked on each platform's base", async () => {
  const dir = await tempDir("copy-twins");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      // /app holds each platform's own file, which the shared layer must not hide
      Dockerfile: `FROM ${reg}/base/busybox
RUN mkdir -p /app/empty && uname -m > /app/machine
COPY files/ /app/files/
COPY files/a.txt /app/empty/
COPY --link files/sub/ /linked/
RUN cat /app/files/a.txt /app/empty/a.txt /app/files/sub/b.txt /linked/b.txt /app/machine > /check
`,
      "files/a.txt": "A\n",
      "files/sub/b.txt": "B\n",
    });
    const root = join(dir, "root");
    const out = join(dir, "out");
    await kilnOk(
      ["build", "--platform", PLATFORMS.join(","), "--output", `type=local,dest=${out}`, "."],
      { root, cwd: ctx },
    );
    assert.equal((await copySnapshots(root)).length, 3, "one snapshot per COPY, not per platform");
    const machines = ["x86_64", "aarch64", "armv7l"];
    for (const [i, p] of PLATFORMS.entries()) {
      const files = join(out, p.replaceAll("/", "_"));
      assert.equal(await readFile(join(files, "check"), "utf8"), `A\nA\nB\nB\n${machines[i]}\n`);
    }
  } finally {
    await removeTree(dir);
  }
});

test("a COPY into what differs between the platforms' bases copies for each", async () => {
  const dir = await tempDir("copy-twins-apart");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
ARG TARGETARCH
RUN mkdir -m 700 /app && if [ "$TARGETARCH" = arm64 ]; then chmod 750 /app; fi
RUN if [ "$TARGETARCH" = arm64 ]; then echo "u:x:2000:2000::/:/bin/sh"; else echo "u:x:1000:1000::/:/bin/sh"; fi >> /etc/passwd
COPY a.txt /app/
COPY --chown=u a.txt /owned.txt
`,
      "a.txt": "A\n",
    });
    const root = join(dir, "root");
    const out = join(dir, "out");
    await kilnOk(
      ["build", "--platform", "linux/amd64,linux/arm64", "--output", `type=local,dest=${out}`, "."],
      { root, cwd: ctx },
    );
    assert.equal((await copySnapshots(root)).length, 4, "each platform copied for itself");
    for (const [p, mode, uid] of [
      ["linux_amd64", 0o700, 1000],
      ["linux_arm64", 0o750, 2000],
    ] as const) {
      assert.equal((await stat(join(out, p, "app"))).mode & 0o777, mode, `${p}: /app's mode`);
      assert.equal(await readFile(join(out, p, "app", "a.txt"), "utf8"), "A\n");
      assert.equal((await stat(join(out, p, "owned.txt"))).uid, uid, `${p}: --chown`);
    }
  } finally {
    await removeTree(dir);
  }
});
