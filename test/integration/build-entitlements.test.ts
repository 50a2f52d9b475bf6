// The RUN sandbox through the CLI: every RUN runs under containerd's default seccomp profile
// (natively and emulated), `RUN --security=insecure` and `RUN --network=host` need
// `--allow`, and an insecure RUN runs without the filter.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  kiln,
  kilnOk,
  removeTree,
  tempDir,
  testRegistry,
  writeContext,
} from "../fixtures/build-cli.js";

const reg = testRegistry();
// creating a user namespace needs no capability: only the seccomp filter refuses it
const PROBE = "(grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1 && echo unshared || true)";
let dir = "";
let ctx = "";
const opts = () => ({ root: join(dir, "root"), cwd: dir });

before(async () => {
  dir = await tempDir("entitlements");
  ctx = await writeContext(join(dir, "ctx"), {
    Dockerfile: `FROM ${reg}/base/busybox:latest\nRUN ${PROBE} > /sandboxed\nRUN --security=insecure ${PROBE} > /insecure\n`,
    "host.Dockerfile": `FROM ${reg}/base/busybox:latest\nRUN --network=host true\n`,
  });
});
after(() => removeTree(dir));

test("RUN --security=insecure without --allow fails on its line with the fix", async () => {
  const r = await kiln(["build", ctx], opts());
  assert.equal(r.code, 1);
  const text = r.messages.join("\n");
  assert.match(text, /Dockerfile:3:5: security\.insecure is not allowed/);
  assert.match(text, /--allow security\.insecure/);
  const host = await kiln(["build", "-f", join(ctx, "host.Dockerfile"), ctx], opts());
  assert.equal(host.code, 1);
  assert.match(host.messages.join("\n"), /host\.Dockerfile:2:5: network\.host is not allowed/);
  await kilnOk(
    ["build", "--allow", "network.host", "-f", join(ctx, "host.Dockerfile"), ctx],
    opts(),
  );
});

test("seccomp blocks unshare in a sandboxed RUN, native and emulated; an allowed insecure RUN is unfiltered", async () => {
  const out = join(dir, "out");
  await kilnOk(
    [
      "build",
      "--allow",
      "security.insecure",
      "--platform",
      "linux/amd64,linux/arm64",
      "-o",
      `type=local,dest=${out}`,
      ctx,
    ],
    opts(),
  );
  const file = (p: string, f: string) => readFile(join(out, p, f), "utf8");
  const refused = "unshare: unshare(0x10000000): Operation not permitted\n";
  for (const p of ["linux_amd64", "linux_arm64"]) {
    assert.equal(await file(p, "sandboxed"), `Seccomp:\t2\n${refused}`, p);
  }
  assert.equal(await file("linux_amd64", "insecure"), "Seccomp:\t0\nunshared\n");
  // QEMU runs a thread of its own, and a threaded process may not unshare its user
  // namespace (EINVAL): what matters is that no filter answers EPERM
  assert.equal(
    await file("linux_arm64", "insecure"),
    "Seccomp:\t0\nunshare: unshare(0x10000000): Invalid argument\n",
  );
});
