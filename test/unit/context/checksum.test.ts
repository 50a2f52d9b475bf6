// contextChecksum: what a COPY's cache key reads from the build context.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chown, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { contextChecksum, makeFilter, resultChecksum } from "../../../src/context/index.js";

test("contextChecksum: contents, names, modes and links count; times do not; order is the walk's", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-ctx-"));
  try {
    await mkdir(join(dir, "src/sub"), { recursive: true });
    // a large file first in walk order and many small ones after it: reads finish out of order
    await writeFile(join(dir, "src/a.bin"), Buffer.alloc(3 << 20, 7));
    for (let i = 0; i < 40; i++) await writeFile(join(dir, `src/sub/f${i}.txt`), `file ${i}\n`);
    await symlink("a.bin", join(dir, "src/link"));
    await writeFile(join(dir, "skip.log"), "x");
    const none = makeFilter([], undefined);
    const sum = () => contextChecksum(dir, none, ["src/"]);

    const first = await sum();
    assert.match(first, /^sha256:[0-9a-f]{64}$/);
    assert.equal(await sum(), first, "stable");
    await utimes(join(dir, "src/sub/f3.txt"), new Date(0), new Date(0));
    assert.equal(await sum(), first, "an mtime is not content");
    await writeFile(join(dir, "src/sub/f3.txt"), "changed\n");
    const changed = await sum();
    assert.notEqual(changed, first, "new content, new checksum");
    await writeFile(join(dir, "src/sub/f3.txt"), "file 3\n");
    assert.equal(await sum(), first, "old content, old checksum");

    // what a path does not select, and what .dockerignore leaves out, do not count
    assert.equal(
      await contextChecksum(dir, none, ["src/sub/f1.txt"]),
      await contextChecksum(dir, none, ["src/sub/f1.txt"]),
    );
    const ignoring = makeFilter(["src/sub/f1*"], undefined);
    assert.notEqual(await contextChecksum(dir, ignoring, ["src/"]), first);
    await writeFile(join(dir, "src/sub/f1.txt"), "ignored change\n");
    assert.equal(
      await contextChecksum(dir, ignoring, ["src/"]),
      await contextChecksum(dir, makeFilter(["src/sub/f1*"], undefined), ["src/"]),
    );
    // a wildcard path and a missing one
    assert.notEqual(
      await contextChecksum(dir, none, ["src/sub/f2*"]),
      await contextChecksum(dir, none, ["src/sub/f3*"]),
    );
    assert.match(await contextChecksum(dir, none, ["nothing-here"]), /^sha256:/);
    // a link is its target text, never followed
    await symlink("/nonexistent", join(dir, "src/dangling"));
    assert.match(await sum(), /^sha256:/, "a dangling link is a link, not a read");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("contextChecksum: a selected symlink counts as what it points to, as COPY copies that", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-ctx-"));
  try {
    await mkdir(join(dir, "real"));
    await writeFile(join(dir, "real/a.txt"), "one\n");
    await writeFile(join(dir, "target.txt"), "one\n");
    await symlink("target.txt", join(dir, "link"));
    await symlink("real", join(dir, "dirlink"));
    // an absolute link is resolved in the context, never on the host
    await symlink("/real", join(dir, "abslink"));
    const none = makeFilter([], undefined);
    const sums = () =>
      Promise.all(
        [["link"], ["dirlink/a.txt"], ["abslink/"], ["dirlink/*.txt"], ["l*"]].map((p) =>
          contextChecksum(dir, none, p),
        ),
      );
    const before = await sums();
    await writeFile(join(dir, "target.txt"), "two\n");
    await writeFile(join(dir, "real/a.txt"), "two\n");
    const after = await sums();
    for (let i = 0; i < before.length; i++) assert.notEqual(after[i], before[i], `selection ${i}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("resultChecksum: owners count (COPY --from keeps them), times do not", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-result-"));
  try {
    await mkdir(join(dir, "out"));
    await writeFile(join(dir, "out/app"), "binary\n");
    const sum = () => resultChecksum(dir, ["/out/"]);
    const first = await sum();
    assert.equal(await sum(), first, "stable");
    await utimes(join(dir, "out/app"), new Date(0), new Date(0));
    assert.equal(await sum(), first, "an mtime is not content");
    await chown(join(dir, "out/app"), 1000, 1000);
    assert.notEqual(await sum(), first, "an owner is");
    await chown(join(dir, "out/app"), 0, 0);
    assert.equal(await sum(), first);
    assert.notEqual(
      await contextChecksum(dir, makeFilter([], undefined), ["/out/"]),
      first,
      "not the context's rule",
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
