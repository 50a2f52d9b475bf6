import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupStaleContainers, runContainer, type ExecSpec } from "../../src/executor/index.js";
import { isKilnError } from "../../src/errors.js";
import { ensureDebs } from "../fixtures/debian.js";

const HOST_BUSYBOX = "/bin/busybox";
const APPLETS = [
  "sh",
  "echo",
  "id",
  "ls",
  "cat",
  "sleep",
  "hostname",
  "touch",
  "pwd",
  "tr",
  "uname",
  "mount",
  "unshare",
  "grep",
];

let base = "";
let stateDir = "";
let rootfs = "";

/** A minimal rootfs: static busybox, applet symlinks, a passwd/group with a named user. */
async function busyboxRootfs(dir: string, busybox: string): Promise<void> {
  for (const d of ["bin", "etc", "proc", "dev", "sys", "tmp"])
    await mkdir(join(dir, d), { recursive: true });
  await copyFile(busybox, join(dir, "bin/busybox"));
  await chmod(join(dir, "bin/busybox"), 0o755);
  for (const a of APPLETS) await symlink("/bin/busybox", join(dir, "bin", a));
  await writeFile(
    join(dir, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
  );
  await writeFile(
    join(dir, "etc/group"),
    "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\naudio:x:29:bob,alice\n",
  );
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), "kiln-exec-"));
  stateDir = join(base, "state");
  rootfs = join(base, "rootfs");
  await busyboxRootfs(rootfs, HOST_BUSYBOX);
});
after(async () => {
  assert.equal(runcList().length, 0, "no containers left behind");
  assert.deepEqual(await readdir(join(stateDir, "bundles")), [], "no bundles left behind");
  await rm(base, { recursive: true, force: true });
});

function runcList(): unknown[] {
  const out = execFileSync("runc", ["--root", join(stateDir, "runc"), "list", "--format", "json"]);
  return (JSON.parse(out.toString() || "null") ?? []) as unknown[];
}

function spec(args: string[], over: Partial<ExecSpec> = {}): ExecSpec {
  return { rootfs, args, env: [], cwd: "/", network: "none", mounts: [], ...over };
}

async function exec(s: ExecSpec): Promise<{ exitCode: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const res = await runContainer(
    s,
    { onStdout: (c) => (out += c.toString()), onStderr: (c) => (err += c.toString()) },
    { stateDir },
  );
  return { exitCode: res.exitCode, out, err };
}

test("echo hello, exit codes, and a missing command", async () => {
  assert.deepEqual(await exec(spec(["echo", "hello"])), { exitCode: 0, out: "hello\n", err: "" });
  assert.equal((await exec(spec(["sh", "-c", "echo oops >&2; exit 7"]))).exitCode, 7);
  assert.equal((await exec(spec(["sh", "-c", "echo oops >&2; exit 7"]))).err, "oops\n");
  await assert.rejects(exec(spec(["no-such-program"])), (e) => {
    assert.ok(isKilnError(e));
    assert.equal(e.code, "E_EXEC_START");
    assert.match(e.message, /no-such-program/);
    return true;
  });
});

test("a stale-state sweep running alongside never takes a live container's bundle", async () => {
  // another kiln on the same state dir sweeps at startup while this one creates bundles
  let running = true;
  const sweeps = (async () => {
    let n = 0;
    while (running || n === 0) {
      assert.deepEqual(await cleanupStaleContainers({ stateDir }), []);
      n++;
    }
    return n;
  })();
  try {
    // one rootfs each: a container stubs /etc/hosts in its rootfs while it runs
    const results = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const own = join(base, `rootfs-${i}`);
        execFileSync("cp", ["-a", rootfs, own]);
        return exec(spec(["echo", String(i)], { rootfs: own }));
      }),
    );
    assert.deepEqual(
      results.map((r) => r.out),
      Array.from({ length: 8 }, (_, i) => `${i}\n`),
    );
  } finally {
    running = false;
  }
  assert.ok((await sweeps) > 0);
});

test("env, cwd, user with supplementary groups, hostname", async () => {
  const script = 'id; pwd; echo "$FOO|$PATH|$HOME"; hostname; ulimit -n';
  const r = await exec(
    spec(["sh", "-c", script], { env: ["FOO=bar"], cwd: "/work/app", user: "alice" }),
  );
  assert.equal(r.exitCode, 0, r.err);
  assert.deepEqual(r.out.split("\n"), [
    "uid=1000(alice) gid=1000(alice) groups=10(wheel),29(audio),1000(alice)",
    "/work/app",
    "bar|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/home/alice",
    "buildkitsandbox",
    "1024",
    "",
  ]);
  const st = await stat(join(rootfs, "work/app"));
  assert.equal(st.uid, 1000, "created working dir belongs to the user");
  assert.equal((await stat(join(rootfs, "work"))).uid, 1000);

  const numeric = await exec(spec(["id"], { user: "1000:29", hostname: "h1" }));
  assert.equal(numeric.out, "uid=1000(alice) gid=29(audio) groups=29(audio)\n");
  await assert.rejects(
    exec(spec(["id"], { user: "nobody" })),
    (e) => isKilnError(e) && e.code === "E_EXEC_USER",
  );
});

test("network none has only loopback; host network sees the host's interfaces", async () => {
  const ifaces = (out: string) =>
    out
      .split("\n")
      .slice(2)
      .map((l) => l.split(":")[0]!.trim())
      .filter(Boolean);
  const none = await exec(spec(["cat", "/proc/net/dev"]));
  assert.deepEqual(ifaces(none.out), ["lo"]);
  const host = await exec(spec(["cat", "/proc/net/dev"], { network: "host" }));
  assert.deepEqual(ifaces(host.out).sort(), ifaces(readFileSync("/proc/net/dev", "utf8")).sort());
});

test("tmpfs and bind mounts (read-only enforced), /etc/hosts, stubs removed", async () => {
  const shared = join(base, "shared");
  await mkdir(shared);
  await writeFile(join(shared, "in"), "from host");
  const r = await exec(
    spec(
      [
        "sh",
        "-c",
        "cat /ro/in; echo; touch /ro/x 2>/dev/null && echo ro-writable; echo w > /rw/out; " +
          "echo t > /scratch/t && cat /scratch/t; grep -c ' /scratch tmpfs' /proc/mounts; cat /etc/hosts",
      ],
      {
        hostname: "builder",
        extraHosts: [{ host: "registry.local", ip: "10.1.2.3" }],
        mounts: [
          { type: "bind", source: shared, target: "/ro", readonly: true },
          { type: "bind", source: shared, target: "/rw", readonly: false },
          { type: "tmpfs", target: "/scratch", size: 1 << 20 },
        ],
      },
    ),
  );
  assert.equal(r.exitCode, 0, r.err);
  assert.deepEqual(r.out.split("\n"), [
    "from host",
    "t",
    "1",
    "127.0.0.1\tlocalhost builder",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "10.1.2.3\tregistry.local",
    "",
  ]);
  assert.equal(readFileSync(join(shared, "out"), "utf8"), "w\n");
  for (const stub of ["ro", "rw", "scratch", "etc/hosts", "etc/resolv.conf"]) {
    assert.ok(!existsSync(join(rootfs, stub)), `mount stub /${stub} was removed`);
  }
});

test("read-only rootfs", async () => {
  const r = await exec(spec(["touch", "/newfile"], { readonlyRootfs: true }));
  assert.notEqual(r.exitCode, 0);
  assert.ok(!existsSync(join(rootfs, "newfile")));
});

test("abort kills a running container, or one still being set up", async () => {
  const ac = new AbortController();
  const running = runContainer(
    spec(["sh", "-c", "echo started; sleep 300"]),
    {
      signal: ac.signal,
      onStdout: () => {
        ac.abort();
      },
    },
    { stateDir },
  );
  await assert.rejects(running, (e) => isKilnError(e) && e.code === "E_EXEC_ABORTED");
  assert.equal(runcList().length, 0);

  const early = new AbortController();
  const setup = runContainer(spec(["sleep", "300"]), { signal: early.signal }, { stateDir });
  early.abort();
  await assert.rejects(setup, (e) => isKilnError(e) && e.code === "E_EXEC_ABORTED");
  assert.equal(runcList().length, 0);
});

test("emulator: arm64 busybox through the bind-mounted qemu, argv rewritten", async () => {
  const qemu = "/usr/bin/qemu-aarch64-static";
  const debs = await ensureDebs("busybox-static", [{ suite: "bookworm", archs: ["arm64"] }]);
  const extracted = join(base, "arm64-deb");
  execFileSync("dpkg-deb", ["-x", debs.get("arm64")!.path, extracted]);
  const armRoot = join(base, "arm64-rootfs");
  await busyboxRootfs(armRoot, join(extracted, "bin/busybox"));
  const r = await exec(
    // cat, a child process, reads pid 1's cmdline (QEMU would fake its own /proc/self view)
    spec(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; uname -m"], {
      rootfs: armRoot,
      emulator: { hostPath: qemu },
    }),
  );
  assert.equal(r.exitCode, 0, r.err);
  // pid 1 is the wrapper itself, not a binfmt_misc-started interpreter
  assert.deepEqual(r.out.split("\n"), [
    "/dev/.kiln-qemu -0 sh /bin/sh -c cat /proc/1/cmdline | tr '\\0' ' '; echo; uname -m ",
    "aarch64",
    "",
  ]);
  assert.ok(
    !existsSync(join(armRoot, "dev/.kiln-qemu")),
    "emulator is not written into the rootfs",
  );
});

test("seccomp: the default profile blocks unshare(CLONE_NEWUSER); --security=insecure lifts it", async () => {
  // creating a user namespace needs no capability: only the seccomp filter refuses it
  const script =
    "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshared || echo refused";
  const sandboxed = await exec(spec(["sh", "-c", script]));
  assert.equal(sandboxed.exitCode, 0, sandboxed.err);
  assert.equal(sandboxed.out, "Seccomp:\t2\nrefused\n");
  assert.match(sandboxed.err, /Operation not permitted/);
  const insecure = await exec(spec(["sh", "-c", script], { security: "insecure" }));
  assert.equal(insecure.exitCode, 0, insecure.err);
  assert.equal(insecure.out, "Seccomp:\t0\nunshared\n");
  // every capability, including CAP_SYS_ADMIN (bit 21)
  const caps = await exec(
    spec(["grep", "^CapEff:", "/proc/self/status"], { security: "insecure" }),
  );
  assert.ok(BigInt(`0x${caps.out.split(/\s+/)[1] ?? ""}`) & (1n << 21n), caps.out);
});
