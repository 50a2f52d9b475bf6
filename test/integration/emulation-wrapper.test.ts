// Wrapper-mode emulation on a machine without binfmt_misc handlers (issue 7). This machine has
// handlers for every QEMU architecture, and tests must not change them, so each test runs its
// program in a user + mount namespace of its own that mounts an EMPTY binfmt_misc instance:
// since Linux 6.7 the kernel consults the nearest instance up the user-namespace tree, so in
// there no host handler exists (the control below proves it). Foreign programs then run only
// if kiln brings the emulator itself: for the first process by wrapping argv, for everything
// it executes through the container's own binfmt_misc instance (src/emulation/private.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { privateBinfmtSupported } from "../../src/emulation/index.js";
import { buildRuntimeSpec, type ExecSpec } from "../../src/executor/index.js";
import {
  collect,
  ensureBuilt,
  pathWithout,
  removeTree,
  tempDir,
  testRegistry,
  unpackPlatform,
  writeContext,
  type KilnResult,
} from "../fixtures/build-cli.js";
import { repoRoot } from "../fixtures/exec.js";
import { KERNEL_TOO_OLD } from "../fixtures/skips.js";

const reg = testRegistry();
const qemu = "/usr/bin/qemu-aarch64-static";
// the one skip scripts/test accepts: it names the kernel
const opts = {
  skip: !(await privateBinfmtSupported())
    ? `${KERNEL_TOO_OLD} no per-user-namespace binfmt_misc (Linux < 6.7)`
    : false,
};

/**
 * Every id mapped to itself but the last: with the full map runc (1.1) believes it is not in a
 * user namespace and fails writing cgroup device rules, which only the initial one may write.
 */
const OUTER_ID_MAP = "0 0 4294967294\n";

/**
 * Starts `argv` in a new user + mount namespace whose binfmt_misc instance is empty. The id map
 * is written from here (unshare's --map-users needs /etc/subuid entries), once unshare(2) has
 * happened; the shell waits for it on stdin before mounting the instance.
 */
async function spawnWithoutBinfmt(
  argv: readonly string[],
  o: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<ChildProcess> {
  const child = spawn(
    "unshare",
    [
      "--user",
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'read -r _ && mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && exec "$@"',
      "sh",
      ...argv,
    ],
    { cwd: o.cwd, env: o.env, stdio: ["pipe", "pipe", "pipe"] },
  );
  try {
    const pid = child.pid!;
    const ours = await readlink("/proc/self/ns/user");
    while ((await readlink(`/proc/${pid}/ns/user`)) === ours) await sleep(10);
    await writeFile(`/proc/${pid}/uid_map`, OUTER_ID_MAP);
    await writeFile(`/proc/${pid}/gid_map`, OUTER_ID_MAP);
    child.stdin.end("go\n");
    return child;
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
}

/** Runs to the end; the namespaces go with the last process in them. */
async function runWithoutBinfmt(
  argv: readonly string[],
  o: { cwd: string; env?: Record<string, string> },
): Promise<KilnResult> {
  const child = await spawnWithoutBinfmt(argv, { cwd: o.cwd, env: { ...process.env, ...o.env } });
  try {
    return await collect(child);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

const hostBinfmt = () => readdir("/proc/sys/fs/binfmt_misc").then((names) => names.sort());

// Busybox runs many applets in-process; a path makes the shell really execve each program.
const CHILDREN = "/bin/uname -m; /bin/ls /bin | /usr/bin/head -1; /usr/bin/id";

test("children of the wrapped process are emulated with no host handler", opts, async () => {
  const before = await hostBinfmt();
  const dir = await tempDir("wrapper-exec");
  try {
    const rootfs = await unpackPlatform(
      `docker://${reg}/base/busybox:latest`,
      { architecture: "arm64" },
      dir,
      join(dir, "bundle"),
    );
    // Control: in this environment the kernel itself cannot run the image's programs.
    const control = await runWithoutBinfmt(["chroot", rootfs, "/bin/busybox", "true"], {
      cwd: dir,
    });
    assert.notEqual(control.code, 0);
    assert.match(control.stderr, /Exec format error/);

    // Also as a non-root USER with the host's network: registration happens before runc
    // switches user, and /sys is bound from the host because sysfs cannot be mounted there.
    const runs = [
      { args: `${CHILDREN}; ls /proc/sys/fs/binfmt_misc`, network: "none" },
      { args: "/usr/bin/id -u; /bin/uname -m", network: "host", user: "1000:1000" },
    ];
    const script = `
      import { runContainer } from ${JSON.stringify(join(repoRoot, "src/executor/index.ts"))};
      const io = { onStdout: (b) => process.stdout.write(b), onStderr: (b) => process.stderr.write(b) };
      for (const run of ${JSON.stringify(runs)}) {
        const r = await runContainer({
          rootfs: ${JSON.stringify(rootfs)}, env: [], cwd: "/", mounts: [], ...run,
          args: ["sh", "-c", run.args], emulator: { hostPath: ${JSON.stringify(qemu)} },
        }, io, { stateDir: ${JSON.stringify(join(dir, "state"))} });
        if (r.exitCode !== 0) process.exit(r.exitCode);
      }`;
    const r = await runWithoutBinfmt(
      [process.execPath, "--import", "tsx", "--input-type=module", "-e", script],
      { cwd: repoRoot },
    );
    assert.equal(r.code, 0, r.stderr);
    // The container's binfmt_misc holds the one handler kiln registered, nothing of the host's.
    assert.equal(
      r.stdout,
      "aarch64\narch\nuid=0(root) gid=0(root) groups=0(root)\nqemu-aarch64\nregister\nstatus\n" +
        "1000\naarch64\n",
    );
  } finally {
    await removeTree(dir);
  }
  assert.deepEqual(await hostBinfmt(), before, "the host's binfmt_misc is unchanged");
});

/** `kiln <args> --progress rawjson` in the binfmt-less environment. */
async function kilnWithoutBinfmt(
  args: readonly string[],
  o: { root: string; cwd: string; path?: string },
): Promise<KilnResult> {
  await ensureBuilt();
  const env: Record<string, string> = { KILN_ROOT: o.root };
  if (o.path !== undefined) env["PATH"] = o.path;
  return runWithoutBinfmt(
    [process.execPath, join(repoRoot, "bin", "kiln"), ...args, "--progress", "rawjson"],
    { cwd: o.cwd, env },
  );
}

test("kiln build --ignore-binfmt: a RUN that executes several programs", opts, async () => {
  const dir = await tempDir("wrapper-build");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
RUN /bin/uname -m > /arch && /bin/ls /bin | /usr/bin/head -1 > /first && /usr/bin/id -u > /uid
`,
    });
    const out = join(dir, "out");
    const r = await kilnWithoutBinfmt(
      [
        "build",
        "--ignore-binfmt",
        "--platform",
        "linux/arm64",
        "-o",
        `type=local,dest=${out}`,
        ".",
      ],
      { root: join(dir, "root"), cwd: ctx },
    );
    assert.equal(r.code, 0, r.messages.join("\n"));
    const run = r.events.find((e) => e.name?.includes("RUN /bin/uname") && e.emulated);
    assert.ok(run, "the RUN step was emulated");
    const files = await Promise.all(
      ["arch", "first", "uid"].map((f) => readFile(join(out, f), "utf8")),
    );
    assert.deepEqual(files, ["aarch64\n", "arch\n", "0\n"]);
  } finally {
    await removeTree(dir);
  }
});

test("no binfmt and no QEMU: one explained error", opts, async () => {
  const dir = await tempDir("wrapper-noemu");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox\nRUN /bin/uname -m\n`,
    });
    const path = await pathWithout(join(dir, "bin"), /^(buildkit-)?qemu-/);
    // Without --ignore-binfmt: kiln probes, finds no handler, and looks for an emulator.
    const r = await kilnWithoutBinfmt(["build", "--platform", "linux/arm64", "."], {
      root: join(dir, "root"),
      cwd: ctx,
      path,
    });
    assert.notEqual(r.code, 0);
    assert.equal(r.messages.length, 2, `only the error and its hint: ${r.messages.join("\n")}`);
    const [error, hint] = r.messages as [string, string];
    assert.match(
      error,
      /^error: cannot run linux\/arm64 programs on this linux\/\S+ host: the kernel has no binfmt_misc handler/,
    );
    assert.match(hint, /^hint: .*apt-get install qemu-user-static.*kiln binfmt --install arm64/);
    assert.ok(!/^\s+at /m.test(r.stderr), `no stack trace: ${r.stderr}`);
  } finally {
    await removeTree(dir);
  }
});

test("the runtime spec: a user namespace, identity maps and the hook only in wrapper mode", () => {
  const spec: ExecSpec = {
    rootfs: "/r",
    args: ["sh"],
    env: [],
    cwd: "/",
    network: "host",
    mounts: [],
    emulator: { hostPath: qemu },
  };
  const input = {
    id: "c1",
    spec,
    args: ["sh"],
    user: { uid: 0, gid: 0, additionalGids: [] },
    hostsPath: "/b/hosts",
    resolvConfPath: "/b/resolv.conf",
  };
  const ids = [{ containerID: 0, hostID: 0, size: 4294967295 }];
  const wrapped = buildRuntimeSpec({
    ...input,
    privateBinfmt: { register: ":qemu-aarch64:M::x:y:/q:CFP", uidMappings: ids, gidMappings: ids },
  });
  const plain = buildRuntimeSpec(input);
  assert.deepEqual(
    wrapped.linux.namespaces.map((n) => n.type),
    ["pid", "ipc", "uts", "mount", "user"],
  );
  assert.deepEqual([wrapped.linux.uidMappings, wrapped.linux.gidMappings], [ids, ids]);
  const [hook] = wrapped.hooks!.createContainer;
  assert.deepEqual(hook!.args.slice(-2), [
    "/r/proc/sys/fs/binfmt_misc",
    ":qemu-aarch64:M::x:y:/q:CFP",
  ]);
  assert.deepEqual(
    wrapped.mounts.find((m) => m.destination === "/sys"),
    {
      destination: "/sys",
      type: "bind",
      source: "/sys",
      options: ["rbind", "nosuid", "noexec", "nodev", "rro"],
    },
  );
  // Without it the spec is what it always was, to the byte.
  const { hooks, linux, mounts, ...rest } = wrapped;
  const { linux: plainLinux, mounts: plainMounts, ...plainRest } = plain;
  assert.ok(hooks !== undefined && !("hooks" in plain));
  assert.deepEqual(rest, plainRest);
  assert.deepEqual(
    mounts.filter((m) => m.destination !== "/sys"),
    plainMounts.filter((m) => m.destination !== "/sys"),
  );
  assert.equal(plainMounts.find((m) => m.destination === "/sys")!.type, "sysfs");
  assert.ok(!("uidMappings" in plainLinux) && !("gidMappings" in plainLinux));
  assert.deepEqual(linux.namespaces.slice(0, -1), plainLinux.namespaces);
  const network = buildRuntimeSpec({
    ...input,
    spec: { ...spec, network: "none" },
    privateBinfmt: { register: "x", uidMappings: ids, gidMappings: ids },
  });
  assert.equal(network.mounts.find((m) => m.destination === "/sys")!.type, "sysfs");
});
