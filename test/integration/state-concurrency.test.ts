// Many kiln processes on one state dir: 4 tagged builds and a `prune` started at once.
// A sharing=locked cache mount is held by one RUN at a time across the processes (each RUN
// takes a marker dir that fails if another holder is inside, and logs start/end), every tag is
// kept, and every stored image is complete (skopeo copies each one out of the store, which
// reads and verifies every blob).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  collect,
  kilnOk,
  removeTree,
  startKiln,
  tempDir,
  testRegistry,
  writeContext,
  type KilnOptions,
} from "../fixtures/build-cli.js";
import { run } from "../fixtures/exec.js";

const reg = testRegistry();
const BUILDS = [1, 2, 3, 4];

test("4 builds and a prune at once on one state dir: locked cache exclusive, tags kept, images complete", async () => {
  const dir = await tempDir("concurrency");
  try {
    const ctx = await writeContext(join(dir, "ctx"), {
      Dockerfile: `FROM ${reg}/base/busybox
ARG N
RUN --mount=type=cache,id=conc,target=/c,sharing=locked sh -c '\\
  mkdir /c/inside || { echo "another RUN is inside the locked cache" >&2; exit 1; }; \\
  echo "start $N" >> /c/log; sleep 1; echo "end $N" >> /c/log; rmdir /c/inside'
RUN echo "$N" > /n
`,
    });
    const o: KilnOptions = { root: join(dir, "root"), cwd: ctx };
    // an earlier tagged image, and something for the prune to remove: an untagged build's cache
    await kilnOk(["build", "--build-arg", "N=0", "-t", "local/conc:0", "."], o);
    await kilnOk(["build", "--build-arg", "N=9", "-o", `type=local,dest=${dir}/o9`, "."], o);

    const started = await Promise.all([
      ...BUILDS.map((n) =>
        startKiln(["build", "--build-arg", `N=${n}`, "-t", `local/conc:${n}`, "."], o),
      ),
      startKiln(["prune", "--force"], o),
    ]);
    const results = await Promise.all(started.map((c) => collect(c)));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const freed = /Total: \S+ \((\d+) bytes\)/.exec(results.at(-1)!.stdout)?.[1];
    assert.ok(
      Number(freed) > 0,
      `the prune removed the untagged build's cache: ${results.at(-1)!.stdout}`,
    );

    // the locked cache: one RUN at a time (start/end pairs never interleave), each build once
    const mounts = join(o.root, "cache-mounts");
    const logs = await Promise.all(
      (await readdir(mounts)).map((d) => readFile(join(mounts, d, "log"), "utf8").catch(() => "")),
    );
    const lines = logs.join("").split("\n").filter(Boolean);
    const runs: string[] = [];
    for (let i = 0; i < lines.length; i += 2) {
      const n = /^start (\d)$/.exec(lines[i]!)?.[1];
      assert.ok(n !== undefined && lines[i + 1] === `end ${n}`, `interleaved: ${lines.join(", ")}`);
      runs.push(n);
    }
    for (const n of BUILDS)
      assert.equal(runs.filter((r) => r === String(n)).length, 1, `${n} ran once`);

    // every tag is there, and every stored image is complete
    const images = JSON.parse((await collect(await startKiln(["images", "--json"], o))).stdout) as {
      name?: string;
      digest: string;
    }[];
    const names = images.map((i) => i.name).filter((n) => n !== undefined);
    for (const n of [0, ...BUILDS])
      assert.ok(names.includes(`docker.io/local/conc:${n}`), names.join());
    await mkdir(join(dir, "out"));
    for (const name of names) {
      const out = join(dir, "out", name.replace(/[/:]/g, "_"));
      await run("skopeo", [
        "copy",
        "--quiet",
        `oci:${join(o.root, "content")}:${name}`,
        `dir:${out}`,
      ]);
      // and what each build made is what its argument said: /n in its top layer
      const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8")) as {
        layers: { digest: string }[];
      };
      const top = join(out, manifest.layers.at(-1)!.digest.slice("sha256:".length));
      const n = /conc:(\d)$/.exec(name)![1];
      assert.equal(await run("tar", ["-xzOf", top, "n"]), `${n}\n`, name);
    }
  } finally {
    await removeTree(dir);
  }
});
