// Every RUN --mount type through the CLI: bind (context, stage), cache (kept between builds),
// tmpfs; and RUN --network=none. Secret mounts are in build-secrets.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
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

test("bind, cache and tmpfs mounts, and a RUN without network", async () => {
  const dir = await tempDir("mounts");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      "data.txt": "from the context\n",
      Dockerfile: `FROM ${reg}/base/busybox AS src
RUN echo from a stage > /s.txt
FROM ${reg}/base/busybox
ARG N=1
RUN --mount=type=bind,source=data.txt,target=/m/d.txt cat /m/d.txt > /bind-ctx && { (echo x >> /m/d.txt) 2>/dev/null && echo rw || echo ro; } > /bind-mode
RUN --mount=type=bind,from=src,source=/s.txt,target=/m/s.txt cat /m/s.txt > /bind-stage
RUN --mount=type=cache,target=/cache,id=kiln-test ls /cache > /cache-before && echo $N > /cache/run$N
RUN --mount=type=tmpfs,target=/tmp/t grep " /tmp/t " /proc/mounts | cut -d" " -f3 > /tmpfs-type && echo x > /tmp/t/f
RUN --network=none ls /sys/class/net > /ifaces
`,
    });
    const opts = { root: join(dir, "root"), cwd: ctx };
    const build = async (n: number) => {
      const out = join(dir, `out${n}`);
      await kilnOk(
        ["build", "--build-arg", `N=${n}`, "--output", `type=local,dest=${out}`, "."],
        opts,
      );
      return { out, read: (f: string) => readFile(join(out, f), "utf8") };
    };

    const first = await build(1);
    assert.equal(await first.read("bind-ctx"), "from the context\n");
    assert.equal(await first.read("bind-mode"), "ro\n", "a context bind is read-only");
    assert.equal(await readFile(join(ctx, "data.txt"), "utf8"), "from the context\n");
    assert.equal(await first.read("bind-stage"), "from a stage\n");
    assert.equal(await first.read("cache-before"), "", "a new cache mount is empty");
    assert.equal(await first.read("tmpfs-type"), "tmpfs\n");
    assert.equal(await first.read("ifaces"), "lo\n", "--network=none has only loopback");
    for (const f of ["cache/run1", "tmp/t/f"]) {
      assert.ok(!existsSync(join(first.out, f)), `${f} is not part of the image`);
    }

    // N changes, so the cache-mount RUN runs again and finds what the first build left there
    const second = await build(2);
    assert.equal(await second.read("cache-before"), "run1\n");
  } finally {
    await removeTree(dir);
  }
});

test("a context bind shows what .dockerignore leaves; rw writes go to a throwaway copy; a missing source is named", async () => {
  const dir = await tempDir("mounts-ctx");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      ".dockerignore": "secret.txt\nsub/*.log\n",
      "secret.txt": "hidden\n",
      "f.txt": "original\n",
      "sub/keep.txt": "k\n",
      "sub/x.log": "log\n",
      Dockerfile: `FROM ${reg}/base/busybox
RUN --mount=type=bind,target=/c ls -a /c /c/sub > /ro-list
RUN --mount=type=bind,target=/c,rw echo changed > /c/f.txt && touch /c/new && cat /c/f.txt > /rw-read && ls /c > /rw-list
RUN --mount=type=bind,target=/c ls /c > /after-list && cat /c/f.txt > /after-read
RUN --mount=type=bind,source=sub,target=/s,rw ls /s > /sub-list && echo y > /s/keep.txt
`,
    });
    const out = join(dir, "out");
    await kilnOk(["build", "--output", `type=local,dest=${out}`, "."], {
      root: join(dir, "root"),
      cwd: ctx,
    });
    const read = (f: string) => readFile(join(out, f), "utf8");
    assert.equal(
      await read("ro-list"),
      "/c:\n.\n..\n.dockerignore\nDockerfile\nf.txt\nsub\n\n/c/sub:\n.\n..\nkeep.txt\n",
      "ignored files are not mounted",
    );
    assert.equal(await read("rw-read"), "changed\n", "an rw context bind is writable");
    assert.equal(await read("rw-list"), "Dockerfile\nf.txt\nnew\nsub\n");
    assert.equal(await read("after-read"), "original\n", "writes are discarded after the step");
    assert.equal(await read("after-list"), "Dockerfile\nf.txt\nsub\n");
    assert.equal(await read("sub-list"), "keep.txt\n");
    assert.equal(await readFile(join(ctx, "f.txt"), "utf8"), "original\n");
    assert.equal(await readFile(join(ctx, "sub", "keep.txt"), "utf8"), "k\n");
    assert.ok(!existsSync(join(ctx, "new")), "the user's context is untouched");

    await writeContext(ctx, {
      Dockerfile: `FROM ${reg}/base/busybox\nRUN --mount=type=bind,source=nope,target=/n true\n`,
    });
    const r = await kiln(["build", "."], { root: join(dir, "root"), cwd: ctx });
    assert.notEqual(r.code, 0);
    assert.match(
      r.messages.find((l) => l.startsWith("error: ")) ?? "",
      /RUN --mount=type=bind,source=nope,target=\/n true: mount source "\/nope" not found in the build context/,
      r.messages.join("\n"),
    );
  } finally {
    await removeTree(dir);
  }
});
