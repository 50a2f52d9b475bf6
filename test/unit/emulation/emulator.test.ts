import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { KilnError } from "../../../src/errors.js";
import {
  buildElf,
  EMULATOR_MOUNT_PATH,
  findEmulator,
  parseQemuVersion,
  planExecution,
  probeBinary,
  qemuArch,
  wrapArgv,
  type SupportedPlatforms,
} from "../../../src/emulation/index.js";
import type { Platform } from "../../../src/platform/index.js";

const linux = (architecture: string, variant?: string): Platform =>
  variant === undefined ? { os: "linux", architecture } : { os: "linux", architecture, variant };

const amd64Host: SupportedPlatforms = {
  native: linux("amd64"),
  supported: [linux("amd64"), linux("amd64", "v2"), linux("arm64")],
  binfmt: [],
  failures: [{ architecture: "386", reason: "exec format error" }],
};

/** A directory of fake emulators; a static x86-64 probe stands in for QEMU (no --version). */
async function emulatorDir(files: Record<string, Uint8Array>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-emu-test-"));
  for (const [name, bytes] of Object.entries(files)) {
    await writeFile(path.join(dir, name), bytes, { mode: 0o755 });
  }
  return dir;
}

const staticElf = () => probeBinary(process.arch === "x64" ? "amd64" : "arm64")!;
const dynamicElf = () => {
  const interp = Buffer.from("/lib/ld.so\0");
  const bin = buildElf({ elfClass: 2, data: 1, machine: 62, code: interp });
  const v = new DataView(bin.buffer);
  v.setUint32(64, 3, true);
  v.setBigUint64(72, 120n, true);
  v.setBigUint64(96, BigInt(interp.length), true);
  return bin;
};

test("qemu names and version parsing", () => {
  assert.equal(qemuArch("arm64"), "aarch64");
  assert.equal(qemuArch("amd64"), "x86_64");
  assert.equal(qemuArch("386"), "i386");
  assert.equal(qemuArch("mips64le"), "mips64el");
  assert.equal(qemuArch("loong64"), "loongarch64");
  assert.equal(qemuArch("s390x"), "s390x");
  assert.equal(
    parseQemuVersion(
      "qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022",
    ),
    "7.2.19",
  );
  assert.equal(parseQemuVersion("qemu-riscv64 version 10.2.3\n"), "10.2.3");
  assert.equal(parseQemuVersion("nonsense"), undefined);
});

test("findEmulator prefers buildkit-qemu, then -static, and skips dynamic binaries", async () => {
  const a = await emulatorDir({ "qemu-aarch64": dynamicElf(), "qemu-aarch64-static": staticElf() });
  const b = await emulatorDir({ "buildkit-qemu-aarch64": staticElf() });
  try {
    const found = await findEmulator(linux("arm64"), { searchDirs: [a], path: b });
    assert.equal(found?.path, path.join(b, "buildkit-qemu-aarch64"));
    assert.equal(found?.patched, true);
    assert.equal(found?.arch, "aarch64");

    const plain = await findEmulator(linux("arm64"), { searchDirs: [a], path: "" });
    assert.equal(plain?.path, path.join(a, "qemu-aarch64-static"));
    assert.equal(plain?.patched, false);

    await rm(path.join(a, "qemu-aarch64-static"));
    assert.equal(await findEmulator(linux("arm64"), { searchDirs: [a], path: "" }), undefined);
  } finally {
    await rm(a, { recursive: true, force: true });
    await rm(b, { recursive: true, force: true });
  }
});

test("planExecution: native, binfmt and amd64 levels", async () => {
  const none = { path: "" };
  assert.deepEqual(await planExecution(linux("amd64"), amd64Host, none), { mode: "native" });
  assert.deepEqual(await planExecution(linux("amd64", "v2"), amd64Host, none), { mode: "native" });
  assert.deepEqual(await planExecution(linux("arm64", "v8"), amd64Host, none), { mode: "binfmt" });
  // arm64 hosts run arm/v7 themselves (containerd's Only).
  const arm64Host: SupportedPlatforms = {
    ...amd64Host,
    native: linux("arm64"),
    supported: [linux("arm64")],
    failures: [],
  };
  assert.deepEqual(await planExecution(linux("arm", "v7"), arm64Host, none), { mode: "native" });
  await assert.rejects(
    planExecution(linux("amd64", "v3"), amd64Host, none),
    (e) =>
      e instanceof KilnError &&
      e.code === "E_PLATFORM_UNSUPPORTED" &&
      e.message.startsWith(
        "no support for running processes with linux/amd64/v3 platform, supported: linux/amd64, linux/amd64/v2, linux/arm64",
      ),
  );
});

test("planExecution wraps when nothing runs the platform, and says how to fix a missing emulator", async () => {
  const dir = await emulatorDir({
    "qemu-riscv64-static": staticElf(),
    "qemu-i386-static": staticElf(),
  });
  try {
    const plan = await planExecution(linux("riscv64"), amd64Host, { searchDirs: [dir], path: "" });
    assert.equal(plan.mode, "wrapper");
    assert.equal(plan.emulator?.path, path.join(dir, "qemu-riscv64-static"));
    // only(amd64) accepts 386, but the 386 probe failed on this kernel: emulate it.
    const i386 = await planExecution(linux("386"), amd64Host, { searchDirs: [dir], path: "" });
    assert.equal(i386.emulator?.path, path.join(dir, "qemu-i386-static"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await assert.rejects(
    planExecution(linux("s390x"), amd64Host, { path: "" }),
    (e) =>
      e instanceof KilnError &&
      e.code === "E_NO_EMULATOR" &&
      /linux\/s390x/.test(e.message) &&
      /qemu-s390x-static/.test(e.message) &&
      (e.hint ?? "").includes("apt-get install qemu-user-static") &&
      (e.hint ?? "").includes("kiln binfmt --install s390x"),
  );
});

test("wrapArgv puts the emulator first and restores argv[0]", () => {
  assert.deepEqual(wrapArgv(["sh", "-c", "true"], "/bin/sh"), [
    EMULATOR_MOUNT_PATH,
    "-0",
    "sh",
    "/bin/sh",
    "-c",
    "true",
  ]);
});
