// The build cache through the CLI: a rebuild with nothing changed starts no container; a changed
// context file re-runs only the steps from the COPY that selects it; a file no COPY selects
// changes nothing; a stage that re-runs with the same output leaves what reads it cached;
// --no-cache and --no-cache-filter force what they name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  containerStarts,
  kilnOk,
  named,
  removeTree,
  runcLogger,
  tempDir,
  testRegistry,
  vertexRecords,
  writeContext,
  type VertexRecord,
} from "../fixtures/build-cli.js";

const reg = testRegistry();

/**
 * Builds of `ctx` in one state dir, with a runc that logs its starts, each into a new local
 * output directory.
 */
function localBuilds(
  dir: string,
  ctx: string,
  wrapper: string,
): () => Promise<{ vs: VertexRecord[]; out: string }> {
  const opts = { root: join(dir, "root"), cwd: ctx, path: `${wrapper}:${process.env.PATH ?? ""}` };
  let n = 0;
  return async () => {
    const out = join(dir, `out${++n}`);
    const r = await kilnOk(["build", "--output", `type=local,dest=${out}`, "."], opts);
    return { vs: vertexRecords(r.events), out };
  };
}

function ran(vs: VertexRecord[]): string[] {
  return vs.filter((v) => v.starts > 0).map((v) => v.name);
}

test("rebuilds: unchanged is fully cached, a COPYed file re-runs from its COPY, others nothing", async () => {
  const dir = await tempDir("cache");
  try {
    const log = join(dir, "runc.log");
    const wrapper = await runcLogger(join(dir, "bin"), log);
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy
`,
      "a.txt": "A\n",
      "unrelated.txt": "U\n",
    });
    const localBuild = localBuilds(dir, ctx, wrapper);
    const build = async () => {
      const { vs, out } = await localBuild();
      return { vs, copy: await readFile(join(out, "copy"), "utf8") };
    };

    const first = await build();
    assert.equal(first.copy, "A\n");
    assert.deepEqual(
      first.vs.filter((v) => v.cached),
      [],
    );
    assert.equal(named(first.vs, /RUN /).length, 2);
    assert.ok(named(first.vs, /RUN /).every((v) => v.starts === 1));
    assert.ok((await containerStarts(log)).length >= 2, "the first build ran containers");

    const again = await build();
    assert.equal(again.copy, "A\n");
    assert.ok(again.vs.length >= 4, "every step was reported");
    assert.deepEqual(ran(again.vs), [], "nothing ran");
    assert.ok(
      again.vs.every((v) => v.cached),
      `every vertex reports cached: ${JSON.stringify(again.vs)}`,
    );
    assert.deepEqual(await containerStarts(log), [], "no container started");

    await writeFile(join(ctx, "a.txt"), "B\n");
    const changed = await build();
    assert.equal(changed.copy, "B\n");
    assert.deepEqual(ran(changed.vs).sort(), [
      "[3/4] COPY a.txt /a.txt",
      "[4/4] RUN cat /a.txt > /copy",
    ]);
    for (const step of [/\[1\/4\] FROM /, /\[2\/4\] RUN echo one/]) {
      assert.ok(named(changed.vs, step)[0]?.cached, `${String(step)} stays cached`);
    }
    assert.equal((await containerStarts(log)).length, 1, "only the last RUN started a container");

    await writeFile(join(ctx, "unrelated.txt"), "V\n");
    const unrelated = await build();
    assert.equal(unrelated.copy, "B\n");
    assert.deepEqual(ran(unrelated.vs), []);
    assert.ok(unrelated.vs.every((v) => v.cached));
    assert.deepEqual(await containerStarts(log), []);
  } finally {
    await removeTree(dir);
  }
});

test("--no-cache runs everything; --no-cache-filter runs the stage and what depends on it", async () => {
  const dir = await tempDir("nocache");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox AS build
RUN echo built > /b
FROM ${reg}/base/busybox AS other
RUN echo other > /o
FROM ${reg}/base/busybox
COPY --from=other /o /o
RUN echo final > /f
COPY --from=build /b /b
`,
    });
    const opts = { root: join(dir, "root"), cwd: ctx };
    const build = async (...flags: string[]) =>
      vertexRecords((await kilnOk(["build", ...flags, "."], opts)).events);

    const first = await build();
    assert.equal(first.length, 6);
    assert.ok(first.every((v) => v.starts === 1 && !v.cached));

    const noCache = await build("--no-cache");
    assert.equal(noCache.length, 6);
    assert.ok(
      noCache.every((v) => v.starts === 1 && !v.cached),
      `everything ran: ${JSON.stringify(noCache)}`,
    );

    // The three stages share one FROM vertex, so whether it is fetched again depends on which
    // stage it is counted in; it is a content-addressed source and changes nothing downstream.
    const steps = (vs: VertexRecord[]) => ran(vs).filter((n) => !/\] FROM /.test(n));
    const filtered = await build("--no-cache-filter", "build");
    // as BuildKit: the stage runs again, and a COPY --from it that reads the same content as
    // before (times aside) stays cached, and so does what follows
    assert.deepEqual(steps(filtered), ["[build 2/2] RUN echo built > /b"]);
    for (const step of [
      /RUN echo other/,
      /COPY --from=other/,
      /RUN echo final/,
      /COPY --from=build/,
    ]) {
      assert.ok(named(filtered, step)[0]?.cached, `${String(step)} stays cached`);
    }

    const final = await build("--no-cache-filter", "other");
    assert.deepEqual(steps(final), ["[other 2/2] RUN echo other > /o"]);
    for (const step of [
      /COPY --from=other/,
      /RUN echo final/,
      /COPY --from=build/,
      /RUN echo built/,
    ]) {
      assert.ok(named(final, step)[0]?.cached, `${String(step)} stays cached`);
    }
  } finally {
    await removeTree(dir);
  }
});

test("a stage re-run with the same output leaves COPY --from and --mount=from steps cached", async () => {
  const dir = await tempDir("content-keys");
  try {
    const log = join(dir, "runc.log");
    const wrapper = await runcLogger(join(dir, "bin"), log);
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox AS build
COPY src/ /src/
RUN mkdir /out && cat /src/a.txt > /out/a && ln -s a /out/link
FROM ${reg}/base/busybox
COPY --from=build /out/ /app/
RUN cat /app/a > /app/copied
RUN --mount=from=build,source=/out/link,target=/m cat /m > /mounted
`,
      "src/a.txt": "A\n",
      "src/notes.txt": "not read by the build's output\n",
    });
    const localBuild = localBuilds(dir, ctx, wrapper);
    const build = async () => {
      const { vs, out } = await localBuild();
      const read = (f: string) => readFile(join(out, f), "utf8");
      return {
        ran: ran(vs).filter((name) => !/\] FROM |\[internal\]/.test(name)),
        files: [await read("app/copied"), await read("mounted")],
      };
    };
    const first = await build();
    assert.deepEqual(first.files, ["A\n", "A\n"]);
    assert.equal(first.ran.length, 5, JSON.stringify(first.ran));
    assert.equal((await containerStarts(log)).length, 3, "the first build ran each RUN");

    // the stage re-runs (its COPY selects the changed file); its /out is the same
    await writeFile(join(ctx, "src/notes.txt"), "changed\n");
    const same = await build();
    assert.deepEqual(same.ran, [
      "[build 2/3] COPY src/ /src/",
      "[build 3/3] RUN mkdir /out && cat /src/a.txt > /out/a && ln -s a /out/link",
    ]);
    assert.deepEqual(same.files, ["A\n", "A\n"]);
    assert.equal(
      (await containerStarts(log)).length,
      1,
      "only the stage's RUN started a container",
    );

    // its output changes: everything that reads it runs, and sees the change
    await writeFile(join(ctx, "src/a.txt"), "B\n");
    const changed = await build();
    assert.equal(changed.ran.length, 5, JSON.stringify(changed.ran));
    assert.deepEqual(changed.files, ["B\n", "B\n"]);

    // the stage runs again and its output is one built before: found by its content
    await writeFile(join(ctx, "src/a.txt"), "A\n");
    await writeFile(join(ctx, "src/notes.txt"), "changed again\n");
    const back = await build();
    assert.equal(back.ran.length, 2, JSON.stringify(back.ran));
    assert.deepEqual(back.files, ["A\n", "A\n"]);
  } finally {
    await removeTree(dir);
  }
});
