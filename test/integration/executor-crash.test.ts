import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cleanupStaleContainers } from "../../src/executor/index.js";
import { Snapshotter, mountsUnder, readMountInfo } from "../../src/snapshot/index.js";

function runcList(stateDir: string): { id: string; status: string }[] {
  const out = execFileSync("runc", ["--root", join(stateDir, "runc"), "list", "--format", "json"]);
  return (JSON.parse(out.toString() || "null") ?? []) as { id: string; status: string }[];
}

/** A child kiln-like process running `sleep` in a container on an overlay snapshot. */
async function startChild(base: string) {
  const stateDir = join(base, "state");
  const snapRoot = join(base, "snapshots");
  const snaps = new Snapshotter(snapRoot);
  const layer = await snaps.newEmpty("unpack", []);
  await mkdir(join(layer.dir, "bin"));
  await copyFile("/bin/busybox", join(layer.dir, "bin/busybox"));
  for (const a of ["sh", "sleep", "echo"]) await symlink("busybox", join(layer.dir, "bin", a));
  await snaps.commit("unpack", layer, "busybox");

  const src = (p: string) =>
    JSON.stringify(fileURLToPath(new URL(`../../src/${p}`, import.meta.url)));
  const script = `
    import { Snapshotter } from ${src("snapshot/index.ts")};
    import { runContainer } from ${src("executor/index.ts")};
    const m = await new Snapshotter(${JSON.stringify(snapRoot)}).prepare("run", ["busybox"]);
    await runContainer(
      { id: "crashme", rootfs: m.rootfs, args: ["sh", "-c", "echo started; sleep 300"],
        env: [], cwd: "/", network: "none", mounts: [] },
      { onStdout: (c) => process.stdout.write(c) },
      { stateDir: ${JSON.stringify(stateDir)} });`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (c: Buffer) => {
      if (c.toString().includes("started")) resolve();
    });
    child.once("exit", () => {
      reject(new Error("child exited before the container started"));
    });
  });
  const exited = new Promise<NodeJS.Signals | null>((r) =>
    child.once("close", (_code, sig) => {
      r(sig);
    }),
  );
  return { child, exited, stateDir, snapRoot };
}

async function withBase(body: (base: string) => Promise<void>): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), "kiln-crash-"));
  try {
    await body(base);
  } finally {
    for (const m of mountsUnder(await readMountInfo(), base)) execFileSync("umount", ["-l", m]);
    await rm(base, { recursive: true, force: true });
  }
}

test("a SIGKILLed kiln leaves a container and a mount; the startup sweeps remove both", () =>
  withBase(async (base) => {
    const { child, exited, stateDir, snapRoot } = await startChild(base);
    // While the owner lives, the sweep leaves its container alone.
    assert.deepEqual(await cleanupStaleContainers({ stateDir }), []);
    child.kill("SIGKILL");
    await exited;

    assert.deepEqual(
      runcList(stateDir).map((c) => [c.id, c.status]),
      [["crashme", "running"]],
      "the container outlives a SIGKILLed kiln",
    );
    assert.equal(mountsUnder(await readMountInfo(), snapRoot).length, 1);

    assert.deepEqual(await cleanupStaleContainers({ stateDir }), ["crashme"]);
    assert.deepEqual(runcList(stateDir), []);
    assert.deepEqual(await readdir(join(stateDir, "bundles")), []);

    const swept = await new Snapshotter(snapRoot).cleanupStale();
    assert.equal(swept.unmounted.length, 1);
    assert.deepEqual(mountsUnder(await readMountInfo(), base), []);
    assert.deepEqual(await readdir(join(snapRoot, "active")), []);
  }));

test("SIGTERM runs the cleanups: container deleted and rootfs unmounted before exit", () =>
  withBase(async (base) => {
    const { child, exited, stateDir, snapRoot } = await startChild(base);
    child.kill("SIGTERM");
    assert.equal(await exited, "SIGTERM", "the signal is re-raised after cleanup");
    assert.deepEqual(runcList(stateDir), []);
    assert.deepEqual(await readdir(join(stateDir, "bundles")), []);
    assert.deepEqual(mountsUnder(await readMountInfo(), snapRoot), []);
  }));
