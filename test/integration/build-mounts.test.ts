// Every RUN --mount type through the CLI: bind (context, stage), cache (kept between builds),
// tmpfs; and RUN --network=none. Secret mounts are in build-secrets.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { kilnOk, removeTree, tempDir, testRegistry, writeContext } from "../fixtures/build-cli.js";

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
