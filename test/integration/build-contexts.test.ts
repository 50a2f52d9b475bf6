// Named build contexts: a local directory (`COPY --from=name`) and docker-image://REF, which
// replaces `FROM name` and `COPY --from=name` without touching the Dockerfile (issue 8).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { kilnOk, removeTree, tempDir, testRegistry, writeContext } from "../fixtures/build-cli.js";

const reg = testRegistry();

test("--build-context name=dir and name=docker-image://ref", async () => {
  const dir = await tempDir("contexts");
  try {
    // `busybox` and `tools` exist nowhere: the named contexts say what they are
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile:
        "FROM busybox\nCOPY --from=extra note.txt /note.txt\nCOPY --from=tools /bin/busybox /tools-busybox\nRUN uname -m > /arch\n",
    });
    const extra = await writeContext(join(dir, "extra"), { "note.txt": "from a named context\n" });
    const out = join(dir, "out");
    await kilnOk(
      [
        "build",
        "--platform",
        "linux/arm64",
        "--build-context",
        `busybox=docker-image://${reg}/base/busybox:latest`,
        "--build-context",
        `tools=docker-image://${reg}/base/busybox:riscv64`,
        "--build-context",
        `extra=${extra}`,
        "-o",
        `type=local,dest=${out}`,
        ctx,
      ],
      { root: join(dir, "root"), cwd: dir },
    );
    assert.equal(await readFile(join(out, "arch"), "utf8"), "aarch64\n");
    assert.equal(await readFile(join(out, "note.txt"), "utf8"), "from a named context\n");
    // the riscv64 busybox came from the tools image: ELF machine 0xf3 (RISC-V) at offset 18
    const elf = await readFile(join(out, "tools-busybox"));
    assert.equal(elf.readUInt16LE(18), 0xf3);
  } finally {
    await removeTree(dir);
  }
});
