import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  explainExecFailure,
  failedProgramFrom,
  isExecFormatError,
  parseBinfmtEntry,
  probeBinary,
  type ExecFailureInfo,
  type SupportedPlatforms,
} from "../../../src/emulation/index.js";

const supported: SupportedPlatforms = {
  native: { os: "linux", architecture: "amd64" },
  supported: [
    { os: "linux", architecture: "amd64" },
    { os: "linux", architecture: "arm64" },
  ],
  binfmt: [],
  failures: [],
};

async function withRootfs(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-explain-test-"));
  try {
    await mkdir(path.join(root, "bin"));
    await mkdir(path.join(root, "usr/local/bin"), { recursive: true });
    await writeFile(path.join(root, "bin/busybox"), probeBinary("arm64")!, { mode: 0o755 });
    await symlink("busybox", path.join(root, "bin/sh"));
    await writeFile(path.join(root, "usr/local/bin/tool"), probeBinary("riscv64")!, {
      mode: 0o755,
    });
    await writeFile(path.join(root, "usr/local/bin/noshebang"), "echo hi\n", { mode: 0o755 });
    await writeFile(path.join(root, "usr/local/bin/py"), "#!/usr/bin/python3\nprint(1)\n", {
      mode: 0o755,
    });
    await writeFile(path.join(root, "usr/local/bin/shscript"), "#!/bin/sh -e\necho\n", {
      mode: 0o755,
    });
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const base = (root: string, over: Partial<ExecFailureInfo>): ExecFailureInfo => ({
  platform: { os: "linux", architecture: "arm64" },
  argv0: "/bin/sh",
  mode: "wrapper",
  supported,
  rootfs: root,
  ...over,
});

test("failedProgramFrom finds the binary in runc and shell messages", () => {
  assert.equal(failedProgramFrom("exec /bin/sh: exec format error"), "/bin/sh");
  assert.equal(
    failedProgramFrom(
      'runc run failed: unable to start container process: exec: "/usr/bin/env": exec format error',
    ),
    "/usr/bin/env",
  );
  assert.equal(failedProgramFrom("/bin/sh: 1: ./tool: Exec format error"), "./tool");
  assert.equal(
    failedProgramFrom("bash: ./a.out: cannot execute binary file: Exec format error"),
    "./a.out",
  );
  assert.equal(
    failedProgramFrom("standard_init_linux.go:228: exec user process caused: exec format error"),
    undefined,
  );
  assert.ok(isExecFormatError("exec /bin/sh: exec format error"));
  assert.ok(!isExecFormatError("permission denied"));
});

test("a binary of another architecture is reported as a build mistake", async () => {
  await withRootfs(async (root) => {
    const e = await explainExecFailure(
      base(root, {
        mode: "native",
        platform: { os: "linux", architecture: "amd64" },
        stderr: "exec /bin/sh: exec format error",
      }),
    );
    assert.match(e.message, /\/bin\/sh \(built for arm64\)/);
    assert.match(e.message, /linux\/amd64/);
    assert.match(
      e.hint,
      /this binary is built for arm64 but the image is linux\/amd64: the image was built with the wrong base or a binary was copied from another stage's platform/,
    );
    assert.doesNotMatch(e.hint, /kiln binfmt/); // arm64 already runs here

    const riscv = await explainExecFailure(
      base(root, { argv0: "tool", stderr: "exec /usr/local/bin/tool: exec format error" }),
    );
    assert.match(riscv.hint, /built for riscv64 but the image is linux\/arm64/);
    assert.match(riscv.hint, /kiln binfmt --install riscv64/);
  });
});

test("a matching binary under the wrapper needs binfmt for the programs it starts", async () => {
  await withRootfs(async (root) => {
    const e = await explainExecFailure(
      base(root, {
        emulator: {
          path: "/usr/bin/qemu-aarch64-static",
          arch: "aarch64",
          version: "7.2.19",
          patched: false,
        },
      }),
    );
    assert.match(e.message, /qemu-aarch64-static \(QEMU 7\.2\.19\)/);
    assert.match(e.message, /unpatched QEMU cannot follow execve/);
    assert.match(e.message, /This linux\/amd64 host runs: linux\/amd64, linux\/arm64\./);
    assert.match(e.hint, /kiln binfmt --install arm64/);
    assert.match(e.hint, /apt-get install qemu-user-static/);
  });
});

test("binfmt and native modes point at the handler or the missing kernel support", async () => {
  await withRootfs(async (root) => {
    const handler = parseBinfmtEntry(
      "qemu-aarch64",
      "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: \noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
    );
    const noF = await explainExecFailure(
      base(root, { mode: "binfmt", supported: { ...supported, binfmt: [handler] } }),
    );
    assert.match(noF.message, /lacks the F flag/);
    assert.match(noF.hint, /kiln binfmt --uninstall arm64` then `kiln binfmt --install arm64`/);

    const gone = await explainExecFailure(base(root, { mode: "binfmt" }));
    assert.match(gone.message, /no binfmt_misc handler for it is registered any more/);

    const native = await explainExecFailure(
      base(root, {
        mode: "native",
        supported: { ...supported, native: { os: "linux", architecture: "arm64" } },
      }),
    );
    assert.match(native.message, /cannot execute linux\/arm64 programs natively/);
    assert.match(native.hint, /kiln binfmt --install arm64/);
  });
});

test("scripts and non-executables are explained as such", async () => {
  await withRootfs(async (root) => {
    const plain = await explainExecFailure(base(root, { argv0: "noshebang" }));
    assert.match(plain.message, /neither an ELF executable nor a script/);
    assert.match(plain.hint, /#!/);
    const py = await explainExecFailure(base(root, { argv0: "/usr/local/bin/py" }));
    assert.match(py.message, /interpreter \/usr\/bin\/python3 is missing/);
    const sh = await explainExecFailure(
      base(root, { argv0: "shscript", platform: { os: "linux", architecture: "amd64" } }),
    );
    assert.match(sh.message, /interpreter \/bin\/sh, built for arm64/);
    assert.match(sh.hint, /built for arm64 but the image is linux\/amd64/);
    // Without a rootfs there is nothing to inspect, but the advice still stands.
    const blind = await explainExecFailure(base(root, { rootfs: undefined }));
    assert.match(blind.hint, /kiln binfmt --install arm64/);
  });
});
