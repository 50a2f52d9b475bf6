// Real execution of the probe binaries (natively and under qemu-user-static) and of the
// platform detection against this machine's kernel. Reads binfmt_misc, never changes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import {
  AMD64_LEVEL_EXIT_BASE,
  amd64LevelFromCpuinfo,
  binfmtStatus,
  findEmulator,
  PROBE_ARCHITECTURES,
  probeBinary,
  probeSupported,
  qemuArch,
  readBinfmtHandlers,
} from "../../src/emulation/index.js";
import { format, type Platform } from "../../src/platform/index.js";

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

async function withProbe<T>(arch: string, fn: (file: string) => T): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-probe-it-"));
  try {
    const file = path.join(dir, `check-${arch}`);
    await writeFile(file, probeBinary(arch)!, { mode: 0o755 });
    return fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("every probe exits cleanly under its qemu-<arch>-static", async (t) => {
  for (const arch of PROBE_ARCHITECTURES) {
    const qemu = `/usr/bin/qemu-${qemuArch(arch)}-static`;
    if (!(await exists(qemu))) {
      t.diagnostic(`skipped ${arch}: ${qemu} is not installed`);
      continue;
    }
    const r = await withProbe(arch, (file) => spawnSync(qemu, [file], { timeout: 20_000 }));
    assert.equal(r.error, undefined, arch);
    assert.equal(r.signal, null, `${arch} killed by ${r.signal}`);
    if (arch === "amd64") {
      assert.ok(r.status === 65 || r.status === 66, `amd64 probe reported level exit ${r.status}`);
    } else {
      assert.equal(r.status, 0, `${arch} probe exit status`);
    }
  }
});

test(
  "the amd64 probe reports the host's x86-64 level natively",
  { skip: process.arch !== "x64" },
  async () => {
    const level = amd64LevelFromCpuinfo(await readFile("/proc/cpuinfo", "utf8"));
    const r = await withProbe("amd64", (file) => spawnSync(file, [], { timeout: 20_000 }));
    assert.equal(r.status, AMD64_LEVEL_EXIT_BASE + Math.min(level, 2));
  },
);

test("probeSupported agrees with the kernel's binfmt_misc handlers", async () => {
  const result = await probeSupported({ cacheMaxAgeMs: 0 });
  const names = result.supported.map(format);
  assert.equal(names[0], format(result.native));
  if (result.native.architecture === "amd64") {
    const level = amd64LevelFromCpuinfo(await readFile("/proc/cpuinfo", "utf8"));
    for (let v = 2; v <= 4; v++) assert.equal(names.includes(`linux/amd64/v${v}`), v <= level);
  }
  // Every architecture is either supported or explained.
  for (const arch of PROBE_ARCHITECTURES) {
    const ok = result.supported.some((p) => p.architecture === arch);
    const failure = result.failures.find((f) => f.architecture === arch);
    assert.ok(
      ok !== (failure !== undefined),
      `${arch}: supported=${ok} failure=${failure?.reason}`,
    );
  }
  // An enabled handler with the F flag must make its architecture runnable in a chroot.
  for (const h of readBinfmtHandlers()) {
    if (h.architecture === undefined || !h.enabled) continue;
    const ok = result.supported.some((p) => p.architecture === h.architecture);
    if (h.flags.includes("F"))
      assert.ok(ok, `${h.name} (${h.flags}) should make ${h.architecture} supported`);
    else if (!ok)
      assert.match(
        result.failures.find((f) => f.architecture === h.architecture)!.reason,
        /F flag/,
      );
  }
  if (result.supported.some((p) => p.architecture === "arm")) {
    assert.ok(names.includes("linux/arm/v7") && names.includes("linux/arm/v6"));
  }
});

test(
  "ignoreBinfmt reports only what the CPU runs itself",
  { skip: process.arch !== "x64" },
  async () => {
    const result = await probeSupported({ ignoreBinfmt: true, cacheMaxAgeMs: 0 });
    const arches = new Set(result.supported.map((p: Platform) => p.architecture));
    assert.deepEqual([...arches].sort(), ["386", "amd64"]);
    assert.deepEqual(result.failures, []);
  },
);

test("probe results are cached until they are older than cacheMaxAgeMs", async () => {
  const first = probeSupported({ ignoreBinfmt: true, cacheMaxAgeMs: 0 });
  assert.equal(probeSupported({ ignoreBinfmt: true, cacheMaxAgeMs: 60_000 }), first);
  assert.notEqual(probeSupported({ ignoreBinfmt: true, cacheMaxAgeMs: 0 }), first);
  await first;
});

test("a probe record serves successful probes across processes while binfmt_misc is unchanged", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-probe-record-"));
  const recordFile = path.join(dir, "cache", "probes.json");
  const probeArm64 = async () =>
    (
      await probeSupported({ cacheMaxAgeMs: 0, architectures: ["arm64"], recordFile })
    ).supported.map(format);
  type Kept = { fingerprint: string; probes: Record<string, { platforms: Platform[] }> };
  const read = async () => JSON.parse(await readFile(recordFile, "utf8")) as Kept;
  try {
    assert.ok((await probeArm64()).includes("linux/arm64"), "this machine emulates arm64");
    const record = await read();
    assert.deepEqual(record.probes.arm64?.platforms.map(format), ["linux/arm64"]);

    // what the record says is what a later probe answers: no process asked
    const marked = { os: "linux", architecture: "arm64", variant: "v9" };
    await writeFile(
      recordFile,
      JSON.stringify({ ...record, probes: { arm64: { platforms: [marked] } } }),
    );
    assert.ok((await probeArm64()).includes("linux/arm64/v9"));

    // a record of another kernel or binfmt_misc state is not used, and is replaced
    await writeFile(
      recordFile,
      JSON.stringify({ fingerprint: "other", probes: { arm64: { platforms: [marked] } } }),
    );
    const again = await probeArm64();
    assert.ok(again.includes("linux/arm64") && !again.includes("linux/arm64/v9"), again.join());
    assert.deepEqual(await read(), record);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("probes of several platforms at once all land in the record", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-probe-record-"));
  const recordFile = path.join(dir, "probes.json");
  try {
    // as a build's platforms are planned: one probeSupported per architecture, concurrently
    await Promise.all(
      ["arm64", "riscv64", "s390x"].map((a) =>
        probeSupported({ cacheMaxAgeMs: 0, architectures: [a], recordFile }),
      ),
    );
    const record = JSON.parse(await readFile(recordFile, "utf8")) as {
      probes: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(record.probes).sort(), ["arm64", "riscv64", "s390x"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("findEmulator finds the installed qemu-user-static with its version", async () => {
  const emu = await findEmulator({ os: "linux", architecture: "arm64" }, { path: "/usr/bin" });
  assert.equal(emu?.path, "/usr/bin/qemu-aarch64-static");
  assert.equal(emu?.arch, "aarch64");
  assert.match(emu?.version ?? "", /^\d+\.\d+/);
});

test("binfmtStatus lists the registered entries and the probed platforms", async () => {
  const status = await binfmtStatus();
  const handlers = readBinfmtHandlers();
  assert.deepEqual(
    status.emulators,
    handlers.map((h) => h.name),
  );
  assert.ok(!status.emulators.includes("register") && !status.emulators.includes("status"));
  assert.ok(status.supported.length >= 1);
  assert.ok(
    status.supported.every((s) => /^linux\/[a-z0-9]+(\/v\d+)?$/.test(s)),
    status.supported.join(),
  );
});
