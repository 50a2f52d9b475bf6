import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  emulatedArgs,
  EMULATOR_MOUNT_PATH,
  parseShebang,
  resolveProgram,
} from "../../../src/emulation/index.js";
import { isKilnError } from "../../../src/errors.js";

let root = "";
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "kiln-rootfs-test-"));
  const at = (p: string) => path.join(root, p);
  await mkdir(at("usr/bin"), { recursive: true });
  await mkdir(at("usr/local/bin"), { recursive: true });
  await mkdir(at("work/tools"), { recursive: true });
  await writeFile(at("usr/bin/busybox"), "\x7fELF...", { mode: 0o755 });
  await writeFile(at("usr/bin/data"), "x", { mode: 0o644 });
  await writeFile(at("usr/local/bin/script"), "#!/bin/sh -e\necho hi\n", { mode: 0o755 });
  await writeFile(at("work/tools/tool"), "#!/usr/bin/env  python3 \n", { mode: 0o755 });
  await symlink("usr/bin", at("bin")); // merged /usr
  await symlink("/usr/bin/busybox", at("usr/bin/sh")); // absolute: must resolve inside root
  await symlink("../../../../../../usr/bin/busybox", at("usr/local/bin/up")); // clamps at root
  await symlink("/loop2", at("usr/local/bin/loop1"));
  await symlink("/usr/local/bin/loop1", at("loop2"));
});
after(() => rm(root, { recursive: true, force: true }));

test("resolveProgram searches PATH for executables like execvp", async () => {
  assert.deepEqual(await resolveProgram(root, "sh"), {
    containerPath: "/usr/bin/sh",
    hostPath: path.join(root, "usr/bin/busybox"),
  });
  assert.equal((await resolveProgram(root, "sh", "/bin"))?.containerPath, "/bin/sh");
  assert.equal((await resolveProgram(root, "up"))?.hostPath, path.join(root, "usr/bin/busybox"));
  assert.equal(
    (await resolveProgram(root, "script", "/bin:/usr/local/bin"))?.containerPath,
    "/usr/local/bin/script",
  );
  assert.equal(await resolveProgram(root, "data"), undefined); // not executable
  assert.equal(
    (await resolveProgram(root, "/bin/busybox"))?.hostPath,
    path.join(root, "usr/bin/busybox"),
  );
  assert.equal(await resolveProgram(root, "missing"), undefined);
  assert.equal(await resolveProgram(root, "sh", "/nowhere"), undefined);
  assert.equal(await resolveProgram(root, "loop1"), undefined, "a symlink loop is not found");
});

test("resolveProgram takes relative names and PATH entries from the working directory", async () => {
  assert.equal(
    (await resolveProgram(root, "tool", "tools", "/work"))?.containerPath,
    "/work/tools/tool",
  );
  assert.equal(
    (await resolveProgram(root, "./tools/tool", undefined, "/work"))?.containerPath,
    "/work/tools/tool",
  );
  assert.equal(await resolveProgram(root, "tool", "tools"), undefined);
});

test("emulatedArgs: qemu -0 argv0 path args; #! scripts run their interpreter", async () => {
  const cwd = "/";
  assert.deepEqual(await emulatedArgs(root, ["sh", "-c", "true"], { cwd }), [
    EMULATOR_MOUNT_PATH,
    "-0",
    "sh",
    "/usr/bin/sh",
    "-c",
    "true",
  ]);
  assert.deepEqual(await emulatedArgs(root, ["script", "a"], { cwd }), [
    EMULATOR_MOUNT_PATH,
    "-0",
    "/bin/sh",
    "/bin/sh",
    "-e",
    "/usr/local/bin/script",
    "a",
  ]);
  assert.deepEqual(
    await emulatedArgs(root, ["./tools/tool"], { cwd: "/work" }),
    [EMULATOR_MOUNT_PATH, "-0", "/usr/bin/env", "/usr/bin/env", "python3", "./tools/tool"],
    "names with a slash are kept as given",
  );
  assert.deepEqual(await emulatedArgs(root, ["./gone", "x"], { cwd }), [
    EMULATOR_MOUNT_PATH,
    "-0",
    "./gone",
    "./gone",
    "x",
  ]);
  for (const [argv, pathEnv] of [[["data"]], [["sh"], "/nowhere"]] as const) {
    await assert.rejects(
      emulatedArgs(root, argv, { cwd, pathEnv }),
      (e) => isKilnError(e) && e.code === "E_EXEC_NOT_FOUND",
    );
  }
  await assert.rejects(
    emulatedArgs(root, [], { cwd }),
    (e) => isKilnError(e) && e.code === "E_EXEC_ARGS",
  );
});

test("parseShebang", () => {
  assert.deepEqual(parseShebang(Buffer.from("#!/bin/sh\n")), { interpreter: "/bin/sh" });
  assert.deepEqual(parseShebang(Buffer.from("#! /usr/bin/env  python3 \nx")), {
    interpreter: "/usr/bin/env",
    arg: "python3",
  });
  assert.deepEqual(parseShebang(new TextEncoder().encode("#!/bin/sh -e")), {
    interpreter: "/bin/sh",
    arg: "-e",
  });
  assert.equal(parseShebang(Buffer.from("\x7fELF")), undefined);
});
