// Pure summary of benchmark samples: min/median per (workload, scenario, tool), kiln/peer ratios,
// and the Markdown tables docs/benchmarks.md shows.

export const SCENARIOS = ["cold", "noop", "changed", "imported"] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const SCENARIO_LABEL: Record<Scenario, string> = {
  cold: "cold",
  noop: "no-op rebuild",
  changed: "one file changed",
  imported: "cold, cache imported",
};

export interface Sample {
  workload: string;
  scenario: Scenario;
  tool: string;
  run: number;
  ok: boolean;
  seconds: number;
  maxRssKiB?: number;
  cpuSeconds?: number;
  error?: string;
}

export interface Summary {
  workload: string;
  scenario: Scenario;
  tool: string;
  runs: number;
  failures: number;
  min?: number;
  median?: number;
  /** Median of the per-run peak RSS / CPU seconds (measured with GNU time). */
  medianRssMiB?: number;
  medianCpuSeconds?: number;
}

export interface Skipped {
  tool: string;
  reason: string;
}

export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(samples: readonly Sample[]): Summary[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = JSON.stringify([s.workload, s.scenario, s.tool]);
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  return [...groups.values()].map((g) => {
    const first = g[0]!;
    const ok = g.filter((s) => s.ok);
    const secs = ok.map((s) => s.seconds);
    const rss = ok.flatMap((s) => (s.maxRssKiB === undefined ? [] : [s.maxRssKiB / 1024]));
    const cpu = ok.flatMap((s) => (s.cpuSeconds === undefined ? [] : [s.cpuSeconds]));
    return {
      workload: first.workload,
      scenario: first.scenario,
      tool: first.tool,
      runs: g.length,
      failures: g.length - ok.length,
      min: secs.length ? Math.min(...secs) : undefined,
      median: median(secs),
      medianRssMiB: median(rss),
      medianCpuSeconds: median(cpu),
    };
  });
}

function cell(s: Summary | undefined): string {
  if (!s) return "—";
  if (s.median === undefined) return `failed (${s.failures}/${s.runs})`;
  const t = `${s.min!.toFixed(2)} / ${s.median.toFixed(2)}`;
  return s.failures ? `${t} (${s.failures} failed)` : t;
}

function ratio(kiln: Summary | undefined, peer: Summary | undefined): string {
  if (kiln?.median === undefined || peer?.median === undefined) return "—";
  return `${(kiln.median / peer.median).toFixed(2)}×`;
}

/**
 * One table per workload: rows are scenarios, cells "min / median" seconds, then kiln's median
 * over each peer's. Tools that were skipped get a column saying so, so the gap is visible.
 */
export function markdown(
  summaries: readonly Summary[],
  tools: readonly string[],
  skipped: readonly Skipped[],
  workloads: readonly { name: string; description: string; platforms: readonly string[] }[],
): string {
  const find = (w: string, sc: Scenario, t: string) =>
    summaries.find((s) => s.workload === w && s.scenario === sc && s.tool === t);
  const skippedSet = new Map(skipped.map((s) => [s.tool, s.reason]));
  const peers = tools.filter((t) => t !== "kiln" && !skippedSet.has(t));
  const out: string[] = [];
  // A run stopped early has workloads it never reached; they get no table.
  for (const w of workloads.filter((x) => summaries.some((s) => s.workload === x.name))) {
    out.push(`### ${w.name}`, "", `${w.description}; ${w.platforms.join(", ")}.`, "");
    const head = [
      "scenario",
      ...tools.map((t) => `${t} (s)`),
      ...(tools.includes("kiln") ? peers.map((p) => `kiln/${p}`) : []),
    ];
    out.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
    for (const sc of SCENARIOS) {
      const cells = tools.map((t) => (skippedSet.has(t) ? "skipped" : cell(find(w.name, sc, t))));
      const ratios = tools.includes("kiln")
        ? peers.map((p) => ratio(find(w.name, sc, "kiln"), find(w.name, sc, p)))
        : [];
      out.push(`| ${[SCENARIO_LABEL[sc], ...cells, ...ratios].join(" | ")} |`);
    }
    out.push("");
  }
  const measured = summaries.filter(
    (s) =>
      s.medianRssMiB !== undefined &&
      (s.tool === "kiln" || s.tool === "buildah" || s.tool === "podman"),
  );
  if (measured.length) {
    out.push(
      "### Resources (daemonless tools; median over runs)",
      "",
      "| workload | scenario | tool | peak RSS (MiB) | CPU user+sys (s) |",
      "|---|---|---|---|---|",
    );
    for (const s of measured) {
      out.push(
        `| ${s.workload} | ${SCENARIO_LABEL[s.scenario]} | ${s.tool} | ${s.medianRssMiB!.toFixed(0)} | ${s.medianCpuSeconds!.toFixed(2)} |`,
      );
    }
    out.push("");
  }
  if (skipped.length) {
    out.push("Skipped:", "");
    for (const s of skipped) out.push(`- ${s.tool}: ${s.reason.split("\n")[0]!}`);
    out.push("");
  }
  return out.join("\n");
}
