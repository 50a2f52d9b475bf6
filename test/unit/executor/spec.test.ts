import { test } from "node:test";
import assert from "node:assert/strict";
import {
  buildRuntimeSpec,
  containerResolvConf,
  DEFAULT_CAPABILITIES,
  hostsFile,
  type ExecSpec,
} from "../../../src/executor/index.js";
import { DEFAULT_CONTAINER_PATH, EMULATOR_MOUNT_PATH } from "../../../src/emulation/index.js";

const base: ExecSpec = {
  rootfs: "/r",
  args: ["sh"],
  env: ["A=1"],
  cwd: "/",
  network: "none",
  mounts: [],
};
const build = (over: Partial<ExecSpec> = {}) =>
  buildRuntimeSpec({
    id: "c1",
    spec: { ...base, ...over },
    args: over.args ?? base.args,
    user: { uid: 0, gid: 0, additionalGids: [0] },
    hostsPath: "/b/hosts",
    resolvConfPath: "/b/resolv.conf",
  });

test("process: default PATH, caps, rlimits, privileges, hostname", () => {
  const s = build();
  assert.deepEqual(s.process.env, [`PATH=${DEFAULT_CONTAINER_PATH}`, "A=1"]);
  assert.deepEqual(build({ env: ["PATH=/x"] }).process.env, ["PATH=/x"]);
  assert.equal(s.process.terminal, false);
  assert.equal(s.process.noNewPrivileges, false);
  assert.deepEqual(s.process.capabilities.bounding, [...DEFAULT_CAPABILITIES]);
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
  assert.ok(!s.process.capabilities.effective.includes("CAP_SYS_ADMIN"));
  assert.deepEqual(s.process.rlimits, [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }]);
  assert.equal(s.hostname, "buildkitsandbox");
  assert.equal(build({ hostname: "h" }).hostname, "h");
  assert.deepEqual(s.root, { path: "/r", readonly: false });
  assert.equal(build({ readonlyRootfs: true }).root.readonly, true);
});

test("namespaces: a network namespace only for network none", () => {
  assert.deepEqual(
    build().linux.namespaces.map((n) => n.type),
    ["pid", "ipc", "uts", "mount", "network"],
  );
  assert.deepEqual(
    build({ network: "host" }).linux.namespaces.map((n) => n.type),
    ["pid", "ipc", "uts", "mount"],
  );
});

test("mounts: standard ones, read-only etc files, user mounts, emulator in /dev", () => {
  const s = build({
    mounts: [
      { type: "bind", source: "/h", target: "/in", readonly: true },
      { type: "tmpfs", target: "/t", size: 1024, mode: 0o1777 },
    ],
    emulator: { hostPath: "/usr/bin/qemu-aarch64-static" },
  });
  const dests = s.mounts.map((m) => m.destination);
  assert.deepEqual(dests, [
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/in",
    "/t",
    EMULATOR_MOUNT_PATH,
  ]);
  const byDest = new Map(s.mounts.map((m) => [m.destination, m]));
  assert.ok(byDest.get("/sys")!.options.includes("ro"));
  assert.deepEqual(byDest.get("/etc/hosts")!.source, "/b/hosts");
  assert.ok(byDest.get("/etc/hosts")!.options.includes("ro"));
  assert.deepEqual(byDest.get("/in")!.options, ["rbind", "ro"]);
  assert.deepEqual(byDest.get("/t")!.options, ["nosuid", "nodev", "size=1024", "mode=1777"]);
  assert.deepEqual(byDest.get(EMULATOR_MOUNT_PATH), {
    destination: EMULATOR_MOUNT_PATH,
    type: "bind",
    source: "/usr/bin/qemu-aarch64-static",
    options: ["rbind", "ro"],
  });
});

test("hosts file and resolv.conf", () => {
  assert.equal(
    hostsFile("sb", [{ host: "a.test", ip: "10.0.0.1" }]),
    "127.0.0.1\tlocalhost sb\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.1\ta.test\n",
  );
  const host = "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n";
  assert.equal(containerResolvConf(host, "host"), host);
  assert.equal(containerResolvConf(host, "none"), "search lan\nnameserver 10.0.0.2\n");
  assert.equal(
    containerResolvConf("nameserver 127.0.0.1\noptions ndots:1\n", "none"),
    "options ndots:1\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
  );
});
