import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTar } from "../../../src/archive/index.js";
import { packUpload } from "../../../src/client/index.js";

test("the upload holds the filtered context, the Dockerfile with its rules, named contexts", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-upload-"));
  try {
    const ctx = join(dir, "ctx");
    await mkdir(join(ctx, "src", "gen"), { recursive: true });
    await mkdir(join(ctx, "logs"));
    await writeFile(join(ctx, "Dockerfile"), "FROM scratch\n");
    await writeFile(join(ctx, ".dockerignore"), "logs\n*.tmp\nsrc/gen\n!src/gen/keep.txt\n");
    await writeFile(join(ctx, "a.txt"), "a");
    await writeFile(join(ctx, "b.tmp"), "b");
    await writeFile(join(ctx, "logs", "x.log"), "x");
    await writeFile(join(ctx, "src", "gen", "drop.txt"), "d");
    await writeFile(join(ctx, "src", "gen", "keep.txt"), "k");
    await symlink("a.txt", join(ctx, "link"));
    const named = join(dir, "named");
    await mkdir(named);
    await writeFile(join(named, "n.txt"), "n");

    const names: string[] = [];
    let rules = "";
    const upload = packUpload({
      contextDir: ctx,
      dockerfile: join(ctx, "Dockerfile"),
      namedContexts: { extra: named },
    });
    for await (const { entry, body } of readTar(upload)) {
      names.push(entry.name);
      let text = "";
      for await (const c of body) text += Buffer.from(c as Buffer).toString();
      if (entry.name === "dockerfile/Dockerfile.dockerignore") rules = text;
    }
    assert.deepEqual(names.sort(), [
      "context/",
      "context/.dockerignore",
      "context/Dockerfile",
      "context/a.txt",
      "context/link",
      "context/src/",
      "context/src/gen/keep.txt",
      "dockerfile/",
      "dockerfile/Dockerfile",
      "dockerfile/Dockerfile.dockerignore",
      "named/",
      "named/extra/",
      "named/extra/n.txt",
    ]);
    assert.equal(rules, "logs\n*.tmp\nsrc/gen\n!src/gen/keep.txt\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
