// binfmt_misc install / uninstall against a PRIVATE binfmt_misc instance: since Linux 6.7 a
// user namespace that mounts binfmt_misc gets its own, empty set of handlers. The scenario
// runs in a child process under `unshare --user --map-root-user --mount` (this same file,
// started with KILN_BINFMT_CHILD set), so the machine's handlers are never touched. Kernels
// without that support skip, unless KILN_TEST_BINFMT=1 allows a restoring test on the host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  access,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isKilnError } from "../../src/errors.js";
import { KERNEL_TOO_OLD } from "../fixtures/skips.js";
import {
  BINFMT_ARCHES,
  DEFAULT_BINFMT_MOUNT,
  EMULATOR_MOUNT_PATH,
  installBinfmt,
  probeBinary,
  probeSupported,
  readBinfmtHandlers,
  uninstallBinfmt,
  wrapArgv,
  type BinfmtChange,
} from "../../src/emulation/index.js";

const SELF = fileURLToPath(import.meta.url);

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => "ok",
    (e: unknown) => (isKilnError(e) ? e.code : String(e)),
  );

const results = (changes: BinfmtChange[]) => changes.map((c) => `${c.architecture}:${c.result}`);

const supportedArches = async (mountPoint: string) =>
  (await probeSupported({ cacheMaxAgeMs: 0, mountPoint })).supported.map((p) => p.architecture);

/** Runs a probe in a chroot, optionally wrapped by a copy of `emulator` (the wrapper path). */
async function runInRootfs(arch: string, emulator?: string): Promise<number | null> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-wrap-it-"));
  try {
    await writeFile(path.join(root, "check"), probeBinary(arch)!, { mode: 0o755 });
    let argv = ["/check"];
    if (emulator !== undefined) {
      await mkdir(path.join(root, "dev"));
      await copyFile(emulator, path.join(root, EMULATOR_MOUNT_PATH));
      argv = wrapArgv(argv, "/check");
    }
    return spawnSync("chroot", [root, ...argv], { timeout: 20_000 }).status;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The scenario, run inside the private namespaces; prints one JSON line. */
async function child(): Promise<void> {
  const mountPoint = await mkdtemp(path.join(os.tmpdir(), "kiln-binfmt-it-"));
  const mounted = spawnSync("mount", ["-t", "binfmt_misc", "binfmt_misc", mountPoint]);
  if (mounted.status !== 0) {
    console.log(JSON.stringify({ unsupported: mounted.stderr.toString().trim() }));
    return;
  }
  const out: Record<string, unknown> = {};
  out["empty"] = await supportedArches(mountPoint);
  out["wrapped"] = await runInRootfs("riscv64", "/usr/bin/qemu-riscv64-static");
  out["unwrapped"] = await runInRootfs("riscv64");

  out["install"] = results(await installBinfmt(["arm64"], { mountPoint }));
  const entry = readBinfmtHandlers(mountPoint).find((h) => h.name === "qemu-aarch64");
  out["entry"] = entry && {
    interpreter: entry.interpreter,
    flags: entry.flags,
    architecture: entry.architecture,
  };
  out["afterInstall"] = await supportedArches(mountPoint);
  out["again"] = results(await installBinfmt(["aarch64", "amd64"], { mountPoint }));
  out["missingQemu"] = await codeOf(
    installBinfmt(["riscv64"], { mountPoint, qemuPath: mountPoint }),
  );
  out["uninstall"] = results(await uninstallBinfmt(["arm64", "riscv64"], { mountPoint }));
  out["afterUninstall"] = await supportedArches(mountPoint);

  out["all"] = results(await installBinfmt("all", { mountPoint, flags: "CFP" }));
  out["allFlags"] = [...new Set(readBinfmtHandlers(mountPoint).map((h) => h.flags))];
  out["afterAll"] = await supportedArches(mountPoint);
  out["uninstallAll"] = results(await uninstallBinfmt("all", { mountPoint }));
  out["left"] = (await readdir(mountPoint)).sort();
  console.log(JSON.stringify(out));
}

async function hostState(): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  for (const name of (await readdir(DEFAULT_BINFMT_MOUNT).catch(() => [] as string[])).sort()) {
    if (name === "register") continue;
    state[name] = await readFile(path.join(DEFAULT_BINFMT_MOUNT, name), "utf8").catch(() => "?");
  }
  return state;
}

function runChild(unshareArgs: string[], scenario: string) {
  return spawnSync("unshare", [...unshareArgs, process.execPath, "--import", "tsx", SELF], {
    env: { ...process.env, KILN_BINFMT_CHILD: scenario },
    cwd: path.dirname(path.dirname(path.dirname(SELF))),
    timeout: 120_000,
    encoding: "utf8",
  });
}

if (process.env["KILN_BINFMT_CHILD"] === "scenario") {
  await child();
} else if (process.env["KILN_BINFMT_CHILD"] === "unprivileged") {
  console.log(JSON.stringify({ code: await codeOf(installBinfmt(["arm64"])) }));
} else {
  test("install / uninstall in a private binfmt_misc instance", async (t) => {
    const before = await hostState();
    const r = runChild(["--user", "--map-root-user", "--mount"], "scenario");
    assert.deepEqual(await hostState(), before, "the host's binfmt_misc must not change");
    const line = r.stdout.trim().split("\n").pop() ?? "";
    // Only a kernel that refuses the namespaces or the mount skips; a crash in the scenario fails.
    const refused = r.stderr.startsWith("unshare:") || line.includes('"unsupported"');
    if (refused) {
      const why = `${KERNEL_TOO_OLD} private binfmt_misc unavailable (Linux < 6.7): ${line || r.stderr.trim()}`;
      if (process.env["KILN_TEST_BINFMT"] === "1") return hostScenario();
      t.skip(why);
      return;
    }
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(line) as Record<string, unknown>;

    // A fresh instance has no handlers: only the CPU's own architectures run.
    assert.ok(!(out["empty"] as string[]).includes("arm64"));
    // The wrapper path runs a foreign binary without any binfmt handler.
    assert.equal(out["wrapped"], 0);
    assert.notEqual(out["unwrapped"], 0);

    assert.deepEqual(out["install"], ["arm64:installed"]);
    assert.deepEqual(out["entry"], {
      interpreter: "/usr/bin/qemu-aarch64-static",
      flags: "OCF",
      architecture: "arm64",
    });
    assert.ok((out["afterInstall"] as string[]).includes("arm64"));
    assert.ok(!(out["afterInstall"] as string[]).includes("riscv64"));
    assert.deepEqual(out["again"], ["arm64:already-registered", "amd64:skipped-native"]);
    assert.equal(out["missingQemu"], "E_QEMU_MISSING");
    assert.deepEqual(out["uninstall"], ["arm64:removed", "riscv64:not-registered"]);
    assert.ok(!(out["afterUninstall"] as string[]).includes("arm64"));

    const installed = (out["all"] as string[]).map((s) => s.split(":")[0]).sort();
    const expected = BINFMT_ARCHES.map((a) => a.architecture).filter(
      (a) => !(out["empty"] as string[]).includes(a),
    );
    assert.deepEqual(installed, expected.sort());
    assert.ok((out["all"] as string[]).every((s) => s.endsWith(":installed")));
    assert.deepEqual(out["allFlags"], ["POCF"]);
    for (const a of expected) assert.ok((out["afterAll"] as string[]).includes(a), a);
    assert.equal((out["uninstallAll"] as string[]).length, expected.length);
    assert.deepEqual(out["left"], ["register", "status"]);
  });

  test("installBinfmt refuses without root", () => {
    // In a user namespace without a mapping the process is uid 65534 (nobody).
    const r = runChild(["--user"], "unprivileged");
    const line = r.stdout.trim().split("\n").pop() ?? "";
    assert.equal(r.status, 0, `unshare --user: ${r.stderr.trim()}`);
    assert.deepEqual(JSON.parse(line), { code: "E_PERMISSION" });
  });
}

/** KILN_TEST_BINFMT=1 on kernels without private instances: the host, restored in finally. */
async function hostScenario(): Promise<void> {
  const present = new Set(readBinfmtHandlers().map((h) => h.name));
  const candidates = BINFMT_ARCHES.filter((a) => !present.has(`qemu-${a.qemuArch}`));
  const usable = [];
  for (const a of candidates) {
    const ok = await access(`/usr/bin/qemu-${a.qemuArch}-static`).then(
      () => true,
      () => false,
    );
    if (ok && a.architecture !== "amd64") usable.push(a);
  }
  const arch = usable[0];
  if (arch === undefined) return; // every emulator is registered already: nothing to change
  try {
    assert.deepEqual(results(await installBinfmt([arch.architecture])), [
      `${arch.architecture}:installed`,
    ]);
    assert.ok((await supportedArches(DEFAULT_BINFMT_MOUNT)).includes(arch.architecture));
  } finally {
    await uninstallBinfmt([arch.architecture]);
  }
  assert.ok(!readBinfmtHandlers().some((h) => h.name === `qemu-${arch.qemuArch}`));
}
