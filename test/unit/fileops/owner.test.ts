import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, symlink, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveOwner } from "../../../src/fileops/index.js";

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "kiln-fileops-"));
  try {
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const PASSWD =
  "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\nweird:x:abc:7::/:/bin/sh\n";
const GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n";

test("--chown resolves names in the destination's passwd and group files", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "etc/passwd"), PASSWD);
    await writeFile(join(root, "etc/group"), GROUP);
    const cases: [string, { uid: number; gid: number }][] = [
      ["app", { uid: 1000, gid: 1001 }],
      ["app:staff", { uid: 1000, gid: 50 }],
      ["app:7", { uid: 1000, gid: 7 }],
      ["1234", { uid: 1234, gid: 1234 }],
      ["1234:staff", { uid: 1234, gid: 50 }],
      ["5:6", { uid: 5, gid: 6 }],
      ["root", { uid: 0, gid: 0 }],
      ["root:root", { uid: 0, gid: 0 }],
      ["weird", { uid: 0, gid: 7 }],
    ];
    for (const [spec, want] of cases) assert.deepEqual(await resolveOwner(root, spec), want, spec);
  }));

test("--chown reads /etc/passwd through symlinks inside the root, never the host's", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "data"));
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "data/passwd"), "svc:x:77:78::/:/bin/sh\n");
    await symlink("/data/passwd", join(root, "etc/passwd"));
    assert.deepEqual(await resolveOwner(root, "svc"), { uid: 77, gid: 78 });
    await rm(join(root, "etc/passwd"));
    // climbing out with ".." stops at this root: the link finds /data/passwd inside it
    await symlink("../../../../../../data/passwd", join(root, "etc/passwd"));
    assert.deepEqual(await resolveOwner(root, "svc"), { uid: 77, gid: 78 });
  }));

test("an unknown or empty name resolves as BuildKit's readUser does: user 0, group unchanged", () =>
  withRoot(async (root) => {
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "etc/passwd"), PASSWD);
    const cases: [string, { uid: number; gid: number }][] = [
      ["nobody2", { uid: 0, gid: 0 }],
      ["app:nogroup", { uid: 1000, gid: 1001 }], // no /etc/group at all
      [":staff", { uid: 0, gid: 0 }],
      ["7:nogroup", { uid: 7, gid: 7 }],
    ];
    for (const [spec, want] of cases) assert.deepEqual(await resolveOwner(root, spec), want, spec);
    await writeFile(join(root, "etc/group"), GROUP);
    assert.deepEqual(await resolveOwner(root, ":staff"), { uid: 0, gid: 50 });
  }));
