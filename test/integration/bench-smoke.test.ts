// The benchmark harness end to end on its tiny workload: kiln builds and pushes a two-platform
// image cold, again with nothing changed, and after one file changed, and the report has its row.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../fixtures/exec.js";
import { kilnBuildWorks } from "../../bench/tools.js";
import { parseGnuTime } from "../../bench/proc.js";
import { markdown, summarize, type Sample, type Summary } from "../../bench/report.js";
import { fileBytes, splitSizes, WORKLOADS, workload } from "../../bench/workloads.js";

test("bench/run.ts --smoke reports kiln's cold, no-op and changed builds", async () => {
  assert.equal(await kilnBuildWorks(join(repoRoot, "bin", "kiln")), undefined);
  const out = await mkdtemp(join(tmpdir(), "kiln-bench-smoke-"));
  try {
    // Reuse the suite's registry (it has the base images) when scripts/test started one.
    const registry = process.env.KILN_TEST_REGISTRY;
    const args = ["--import", "tsx", "bench/run.ts", "--smoke", "--out", out];
    if (registry) args.push("--registry", registry);
    const child = spawn(process.execPath, args, {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => output.push(b));
    child.stderr.on("data", (b: Buffer) => output.push(b));
    const [code] = (await once(child, "close")) as [number | null];
    const text = Buffer.concat(output).toString();
    assert.equal(code, 0, text);

    const files = await readdir(out);
    const md = files.find((f) => f.endsWith(".md"));
    const json = files.find((f) => f.endsWith(".json"));
    assert.ok(md && json, `no results in ${files.join(", ")}`);
    const table = await readFile(join(out, md), "utf8");
    assert.match(table, /^\| scenario +\| kiln \(s\) +\|/m);
    for (const row of ["cold", "no-op rebuild", "one file changed"]) {
      assert.match(table, new RegExp(`^\\| ${row} +\\| \\d+\\.\\d\\d / \\d+\\.\\d\\d +\\|`, "m"));
    }
    const { summaries } = JSON.parse(await readFile(join(out, json), "utf8")) as {
      summaries: Summary[];
    };
    const kiln = summaries.filter((s) => s.tool === "kiln");
    assert.deepEqual(kiln.map((s) => s.scenario).sort(), ["changed", "cold", "imported", "noop"]);
    for (const s of kiln) {
      assert.equal(s.failures, 0);
      assert.ok(s.median !== undefined && s.median > 0);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

// The harness's pure parts, so a wrong table or workload shows up even while kiln cannot build.
describe("bench harness", () => {
  test("workloads have the documented sizes and their change target", () => {
    const total = (name: string) => {
      const files = workload(name).files(1);
      return { n: files.length, bytes: files.reduce((a, f) => a + f.size, 0) };
    };
    assert.deepEqual(total("simple"), { n: 200, bytes: 20 * 2 ** 20 });
    assert.deepEqual(total("big-context"), { n: 20000, bytes: 2 ** 30 });
    assert.equal(workload("wide").platforms.length, 6);
    for (const w of WORKLOADS) {
      assert.ok(
        w.files(1).some((f) => f.path === w.changeFile),
        `${w.name}: ${w.changeFile} is not generated`,
      );
      assert.match(w.dockerfile("reg:5000/base/busybox:latest", 1), /^FROM .*reg:5000\/base/m);
    }
    assert.throws(() => workload("nope"), /unknown workload/);
  });

  test("sizes and bytes are deterministic and exact", () => {
    const sizes = splitSizes(1000003, 7, 42);
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      1000003,
    );
    assert.deepEqual(sizes, splitSizes(1000003, 7, 42));
    for (const s of sizes.slice(1)) assert.ok(Math.abs(s - 142857) <= 142857 * 0.25 + 1);
    assert.equal(fileBytes(1, 5, 12345).length, 12345);
    assert.deepEqual(fileBytes(1, 5, 1000), fileBytes(1, 5, 1000));
    assert.notDeepEqual(fileBytes(1, 5, 1000), fileBytes(1, 6, 1000));
    assert.notDeepEqual(fileBytes(1, 5, 1000), fileBytes(2, 5, 1000));
  });

  test("GNU time -v output gives peak RSS and user+system CPU", () => {
    const text = [
      '\tCommand being timed: "sh -c true"',
      "\tUser time (seconds): 1.25",
      "\tSystem time (seconds): 0.50",
      "\tMaximum resident set size (kbytes): 51200",
      "\tExit status: 0",
    ].join("\n");
    assert.deepEqual(parseGnuTime(text), { maxRssKiB: 51200, cpuSeconds: 1.75 });
    assert.equal(parseGnuTime("Command exited with non-zero status 1"), undefined);
  });

  test("summaries take min and median of successful runs; the table shows ratios and skips", () => {
    const s = (tool: string, run: number, seconds: number, ok = true): Sample => ({
      workload: "simple",
      scenario: "cold",
      tool,
      run,
      ok,
      seconds,
    });
    const summaries = summarize([
      s("kiln", 1, 2),
      s("kiln", 2, 1),
      s("kiln", 3, 9, false),
      s("buildah", 1, 4),
      s("buildah", 2, 6),
    ]);
    const kiln = summaries.find((x) => x.tool === "kiln")!;
    assert.deepEqual([kiln.min, kiln.median, kiln.failures, kiln.runs], [1, 1.5, 1, 3]);
    const table = markdown(
      summaries,
      ["kiln", "buildah", "docker"],
      [{ tool: "docker", reason: "not installed" }],
      [workload("simple")],
    );
    assert.match(
      table,
      /^\| scenario \| kiln \(s\) \| buildah \(s\) \| docker \(s\) \| kiln\/buildah \|$/m,
    );
    assert.match(
      table,
      /^\| cold \| 1\.00 \/ 1\.50 \(1 failed\) \| 4\.00 \/ 5\.00 \| skipped \| 0\.30× \|$/m,
    );
    assert.match(table, /^\| no-op rebuild \| — \| — \| skipped \| — \|$/m);
    assert.match(table, /^- docker: not installed$/m);
  });
});
