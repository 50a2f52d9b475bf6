import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  emulatedArgs,
  EMULATOR_PATH,
  lookPathInRoot,
  parseShebang,
  resolveInRoot,
} from "../../../src/executor/index.js";
import { isKilnError } from "../../../src/errors.js";

let root = "";
before(async () => {
  root = await mkdtemp(join(tmpdir(), "kiln-rootfs-"));
  await mkdir(join(root, "bin"));
  await mkdir(join(root, "usr/local/bin"), { recursive: true });
  await writeFile(join(root, "bin/busybox"), "\x7fELF...", { mode: 0o755 });
  await symlink("/bin/busybox", join(root, "bin/sh")); // absolute: must resolve inside root
  await symlink("../../../../../../bin/busybox", join(root, "usr/local/bin/up")); // clamps at root
  await writeFile(join(root, "usr/local/bin/script"), "#!/bin/sh -e\necho hi\n", { mode: 0o755 });
  await writeFile(join(root, "bin/notexec"), "x", { mode: 0o644 });
  await symlink("/loop2", join(root, "loop1"));
  await symlink("/loop1", join(root, "loop2"));
  await symlink("/etc", join(root, "etclink"));
});
after(() => rm(root, { recursive: true, force: true }));

test("resolveInRoot follows symlinks without leaving the root", async () => {
  assert.equal(await resolveInRoot(root, "/bin/sh"), join(root, "bin/busybox"));
  assert.equal(await resolveInRoot(root, "usr/local/bin/up"), join(root, "bin/busybox"));
  assert.equal(await resolveInRoot(root, "/../../bin/sh"), join(root, "bin/busybox"));
  assert.equal(
    await resolveInRoot(root, "/etclink/passwd"),
    join(root, "etc/passwd"),
    "missing tail kept",
  );
  assert.equal(await resolveInRoot(root, "/"), root);
  await assert.rejects(
    resolveInRoot(root, "/loop1"),
    (e) => isKilnError(e) && e.code === "E_EXEC_SYMLINK_LOOP",
  );
});

test("lookPathInRoot searches PATH inside the rootfs, in order", async () => {
  assert.equal(await lookPathInRoot(root, "sh", [], "/"), "/bin/sh");
  assert.equal(
    await lookPathInRoot(root, "script", ["PATH=/bin:/usr/local/bin"], "/"),
    "/usr/local/bin/script",
  );
  assert.equal(
    await lookPathInRoot(root, "./rel/x", [], "/"),
    "./rel/x",
    "names with a slash are kept",
  );
  await assert.rejects(
    lookPathInRoot(root, "notexec", [], "/"),
    (e) => isKilnError(e) && e.code === "E_EXEC_NOT_FOUND",
  );
  await assert.rejects(
    lookPathInRoot(root, "sh", ["PATH=/nowhere"], "/"),
    (e) => isKilnError(e) && e.code === "E_EXEC_NOT_FOUND",
  );
});

test("emulatedArgs: qemu -0 argv0 path args; #! scripts run their interpreter", async () => {
  assert.deepEqual(await emulatedArgs(root, ["sh", "-c", "true"], [], "/"), [
    EMULATOR_PATH,
    "-0",
    "sh",
    "/bin/sh",
    "-c",
    "true",
  ]);
  assert.deepEqual(await emulatedArgs(root, ["script", "a"], [], "/"), [
    EMULATOR_PATH,
    "-0",
    "/bin/sh",
    "/bin/sh",
    "-e",
    "/usr/local/bin/script",
    "a",
  ]);
  await assert.rejects(
    emulatedArgs(root, [], [], "/"),
    (e) => isKilnError(e) && e.code === "E_EXEC_ARGS",
  );
});

test("parseShebang", () => {
  assert.deepEqual(parseShebang(Buffer.from("#!/bin/sh\n")), { interpreter: "/bin/sh" });
  assert.deepEqual(parseShebang(Buffer.from("#! /usr/bin/env  python3 \nx")), {
    interpreter: "/usr/bin/env",
    arg: "python3",
  });
  assert.equal(parseShebang(Buffer.from("\x7fELF")), undefined);
});
