import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultSeccompProfile, type SeccompRule } from "../../../src/executor/seccomp.js";
import {
  buildRuntimeSpec,
  DEFAULT_CAPABILITIES,
  type ExecSpec,
} from "../../../src/executor/index.js";

const allowed = (rules: SeccompRule[], name: string): SeccompRule[] =>
  rules.filter((r) => r.action === "SCMP_ACT_ALLOW" && r.names.includes(name));

test("default profile: EPERM by default, host ABIs, common syscalls allowed unconditionally", () => {
  const p = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "x64", kernel: "6.1.0" });
  assert.equal(p.defaultAction, "SCMP_ACT_ERRNO");
  assert.deepEqual(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  for (const name of ["read", "execve", "openat", "arch_prctl", "ptrace", "chroot"]) {
    assert.deepEqual(
      allowed(p.syscalls, name).map((r) => r.args),
      [undefined],
      name,
    );
  }
  for (const name of ["unshare", "mount", "keyctl", "add_key", "clock_settime", "reboot"]) {
    assert.deepEqual(allowed(p.syscalls, name), [], `${name} is blocked`);
  }
  assert.deepEqual(allowed(p.syscalls, "riscv_flush_icache"), [], "another arch's syscall");
  // ptrace only from Linux 4.8 on
  const old = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "x64", kernel: "4.4.0-1" });
  assert.deepEqual(allowed(old.syscalls, "ptrace"), []);
});

test("argument rules: socket families, personality values, clone without namespaces", () => {
  const p = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "arm64", kernel: "6.1" });
  assert.deepEqual(p.architectures, ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]);
  assert.deepEqual(
    allowed(p.syscalls, "socket").map((r) => r.args),
    [
      [{ index: 0, op: "SCMP_CMP_LT", value: 38 }],
      [{ index: 0, op: "SCMP_CMP_EQ", value: 39 }],
      [{ index: 0, op: "SCMP_CMP_GT", value: 40 }],
    ],
  );
  assert.deepEqual(
    allowed(p.syscalls, "personality").map((r) => r.args?.[0]?.value),
    [0, 8, 0x20000, 0x20008, 0xffffffff],
  );
  assert.deepEqual(allowed(p.syscalls, "clone")[0]?.args, [
    { index: 0, op: "SCMP_CMP_MASKED_EQ", value: 0x7e020000, valueTwo: 0 },
  ]);
  assert.deepEqual(
    p.syscalls.find((r) => r.names.includes("clone3")),
    { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
    "clone3 says ENOSYS so libcs fall back to clone",
  );
  const s390 = defaultSeccompProfile(DEFAULT_CAPABILITIES, { arch: "s390x", kernel: "6.1" });
  assert.equal(allowed(s390.syscalls, "clone")[0]?.args?.[0]?.index, 1);
});

test("capabilities add their syscalls; CAP_SYS_ADMIN allows clone and unshare outright", () => {
  const p = defaultSeccompProfile([...DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_TIME"], {
    arch: "x64",
    kernel: "6.1",
  });
  for (const name of ["unshare", "mount", "clone", "clone3", "clock_settime"]) {
    assert.deepEqual(
      allowed(p.syscalls, name).map((r) => r.args),
      [undefined],
      name,
    );
  }
  assert.ok(!p.syscalls.some((r) => r.action === "SCMP_ACT_ERRNO"));
});

test("runtime spec: sandboxed RUN gets the profile; insecure gets every capability and no filter", () => {
  const input = {
    id: "c1",
    args: ["sh"],
    user: { uid: 0, gid: 0, additionalGids: [] },
    hostsPath: "/b/hosts",
    resolvConfPath: "/b/resolv.conf",
  };
  const spec: ExecSpec = {
    rootfs: "/r",
    args: ["sh"],
    env: [],
    cwd: "/",
    network: "none",
    mounts: [],
  };
  const sandboxed = buildRuntimeSpec({ ...input, spec: { ...spec, mounts: [] } });
  assert.equal(sandboxed.linux.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
  assert.ok(sandboxed.linux.maskedPaths.includes("/proc/kcore"));
  const insecure = buildRuntimeSpec({
    ...input,
    spec: { ...spec, mounts: [], security: "insecure" },
    ownCapabilities: (1n << 41n) - 1n - (1n << 24n),
  });
  assert.equal(insecure.linux.seccomp, undefined);
  assert.equal(insecure.process.capabilities.bounding.length, 40);
  assert.ok(insecure.process.capabilities.bounding.includes("CAP_SYS_ADMIN"));
  assert.ok(!insecure.process.capabilities.bounding.includes("CAP_SYS_RESOURCE"), "not kiln's");
  assert.deepEqual(insecure.linux.maskedPaths, []);
  assert.deepEqual(insecure.linux.readonlyPaths, []);
  assert.ok(insecure.linux.devices?.some((d) => d.path === "/dev/fuse"));
  const sys = insecure.mounts.find((m) => m.destination === "/sys");
  assert.ok(sys && !sys.options.includes("ro"), "writable /sys");
});
