// The benchmark harness end to end on its tiny workload: kiln builds and pushes a two-platform
// image cold, again with nothing changed, and after one file changed, and the report has its row.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../fixtures/exec.js";
import { kilnBuildWorks } from "../../bench/tools.js";
import type { Summary } from "../../bench/report.js";

const notYet = await kilnBuildWorks(repoRoot);

test(
  "bench/run.ts --smoke reports kiln's cold, no-op and changed builds",
  { skip: notYet && `kiln cannot build yet: ${notYet}` },
  async () => {
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
      assert.match(table, /^\| scenario \| kiln \(s\) \|/m);
      for (const row of ["cold", "no-op rebuild", "one file changed"]) {
        assert.match(table, new RegExp(`^\\| ${row} \\| \\d+\\.\\d\\d / \\d+\\.\\d\\d \\|`, "m"));
      }
      const { summaries } = JSON.parse(await readFile(join(out, json), "utf8")) as {
        summaries: Summary[];
      };
      const kiln = summaries.filter((s) => s.tool === "kiln");
      assert.deepEqual(kiln.map((s) => s.scenario).sort(), ["changed", "cold", "noop"]);
      for (const s of kiln) {
        assert.equal(s.failures, 0);
        assert.ok(s.median !== undefined && s.median > 0);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  },
);
