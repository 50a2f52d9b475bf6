// What differs between the peer's image and kiln's, and which differences are by design. Against
// current BuildKit (buildctl) everything must agree: config bytes, history, diff_ids, files and
// mtimes, per platform; a case's `expect-buildkit` file lists differences kiln makes on purpose.
// Against Docker 20.10's BuildKit (v0.8, the older mode), kiln follows current BuildKit where
// they differ: explained here (generic rules) or in a case's `expect` file (lines
// "<regex> => <reason>", matched against the text of one difference).
import type { ImageSummary } from "./image.js";

/**
 * `images`: one summary per platform (`linux/arm/v7`). `started`: seconds when the build began;
 * files stamped later were made by the build.
 */
export type Outcome =
  | { ok: true; images: Record<string, ImageSummary>; started: number }
  | { ok: false; error: string };

/** Which peer the images come from: current BuildKit (exact comparison) or Docker 20.10. */
export type Peer = "buildkit" | "docker20";

export interface Diff {
  kind: "build" | "config" | "history" | "layers" | "tree" | "mtime";
  docker: string;
  kiln: string;
  /** One line (or a few) for people. */
  text: string;
  /** For files: both contents (small files only). */
  contents?: [string | undefined, string | undefined];
  /** Set when the difference is by design. */
  reason?: string;
}

export interface KnownDiff {
  pattern: RegExp;
  reason: string;
}

function show(v: unknown): string {
  return v === undefined ? "(unset)" : JSON.stringify(v);
}

function indent(s: string): string {
  return s.replace(/\n/g, "\n      ");
}

export function compare(d: Outcome, k: Outcome, peer: Peer): Diff[] {
  if (!d.ok && !k.ok) return [];
  if (!d.ok || !k.ok) {
    // what kiln made is then checked by eye against current BuildKit: show its small files
    const made = k.ok
      ? Object.values(k.images)
          .slice(0, 1)
          .flatMap((img) => Object.entries(img.small))
          .filter(([p]) => !p.startsWith("etc/"))
          .map(([p, c]) => `\n      kiln /${p}: ${JSON.stringify(c)}`)
          .join("")
      : "";
    const text = !d.ok
      ? `docker failed, kiln built:\n      ${indent(d.error)}${made}`
      : `kiln failed, docker built:\n      ${indent(k.ok ? "" : k.error)}`;
    return [{ kind: "build", docker: d.ok ? "ok" : d.error, kiln: k.ok ? "ok" : k.error, text }];
  }
  const diffs: Diff[] = [];
  const platforms = [...new Set([...Object.keys(d.images), ...Object.keys(k.images)])].sort();
  for (const p of platforms) {
    const a = d.images[p];
    const b = k.images[p];
    const at = platforms.length > 1 ? `[${p}] ` : "";
    if (a === undefined || b === undefined) {
      const text = `${at}image: peer ${a ? "built" : "(none)"} | kiln ${b ? "built" : "(none)"}`;
      diffs.push({ kind: "layers", docker: a ? p : "", kiln: b ? p : "", text });
      continue;
    }
    const found = peer === "buildkit" ? exactDiffs(a, b) : docker20Diffs(a, b, d.started);
    for (const x of found) diffs.push({ ...x, text: at + x.text });
  }
  return diffs;
}

/** Current BuildKit: every config field, history entry, diff_id, file and mtime must agree. */
function exactDiffs(a: ImageSummary, b: ImageSummary): Diff[] {
  const diffs: Diff[] = [];
  const x = a.raw ?? {};
  const y = b.raw ?? {};
  for (const key of new Set([...Object.keys(x), ...Object.keys(y)])) {
    const u = x[key] ?? "(unset)";
    const v = y[key] ?? "(unset)";
    if (u === v) continue;
    const kind = key.startsWith("history")
      ? "history"
      : key.startsWith("rootfs")
        ? "layers"
        : "config";
    diffs.push({ kind, docker: u, kiln: v, text: `${key}: buildkit ${u}\n      kiln     ${v}` });
  }
  if (diffs.length === 0 && a.configDigest !== b.configDigest) {
    const text = `config bytes: same fields, other encoding (buildkit ${a.configDigest} | kiln ${b.configDigest})`;
    diffs.push({ kind: "config", docker: a.configDigest ?? "", kiln: b.configDigest ?? "", text });
  }
  diffs.push(...treeDiffs(a, b, () => true, "buildkit"));
  return diffs;
}

function docker20Diffs(a: ImageSummary, b: ImageSummary, started: number): Diff[] {
  const diffs: Diff[] = [];
  const add = (kind: Diff["kind"], docker: string, kiln: string, text: string) =>
    diffs.push({ kind, docker, kiln, text });
  for (const key of new Set([...Object.keys(a.config), ...Object.keys(b.config)])) {
    const x = show(a.config[key]);
    const y = show(b.config[key]);
    if (x !== y) add("config", x, y, `config.${key}: docker ${x} | kiln ${y}`);
  }
  const n = Math.max(a.history.length, b.history.length);
  for (let i = 0; i < n; i++) {
    const x = a.history[i];
    const y = b.history[i];
    const fx = x === undefined ? "(none)" : `${x.empty_layer ? "[empty] " : ""}${x.created_by}`;
    const fy = y === undefined ? "(none)" : `${y.empty_layer ? "[empty] " : ""}${y.created_by}`;
    if (fx !== fy) add("history", fx, fy, `history[${i}]: docker ${fx}\n      kiln ${fy}`);
  }
  if (a.layers !== b.layers)
    add(
      "layers",
      String(a.layers),
      String(b.layers),
      `layers: docker ${a.layers} | kiln ${b.layers}`,
    );
  // Only stamps older than the build came from the context (or an archive) and must agree.
  diffs.push(...treeDiffs(a, b, (mtime) => mtime < started - 1, "docker"));
  return diffs;
}

/** The file trees; `checkMtime` says which of the peer's stamps must be matched. */
function treeDiffs(
  a: ImageSummary,
  b: ImageSummary,
  checkMtime: (t: number) => boolean,
  peer: string,
): Diff[] {
  const diffs: Diff[] = [];
  for (const p of new Set([...Object.keys(a.tree), ...Object.keys(b.tree)])) {
    const x = a.tree[p];
    const y = b.tree[p];
    if (x !== y) {
      let text = `/${p}: ${peer} ${x ?? "(absent)"} | kiln ${y ?? "(absent)"}`;
      const ca = a.small[p];
      const cb = b.small[p];
      if (x?.startsWith("file") && y?.startsWith("file") && ca !== cb)
        text += `\n      contents: ${peer} ${show(ca)} | kiln ${show(cb)}`;
      diffs.push({
        kind: "tree",
        docker: x ?? "(absent)",
        kiln: y ?? "(absent)",
        text,
        contents: [ca, cb],
      });
      continue;
    }
    const ma = a.mtimes[p];
    const mb = b.mtimes[p];
    if (ma !== undefined && mb !== undefined && checkMtime(ma) && ma !== mb) {
      const text = `/${p} mtime: ${peer} ${ma} | kiln ${mb}`;
      diffs.push({ kind: "mtime", docker: String(ma), kiln: String(mb), text });
    }
  }
  return diffs;
}

const stripFlags = (s: string) => s.replace(/ --ch(own|mod)=\S+/g, "");
/** Whether kiln's ARG line declares the same keys as the peer's, whatever the values. */
function sameArgKeys(docker: string, kiln: string): boolean {
  const keys = docker
    .replace(/^\[empty\] ARG /, "")
    .split(" ")
    .filter((w) => /^[A-Za-z_][A-Za-z0-9_]*(=|$)/.test(w))
    .map((kv) => kv.split("=")[0]!);
  const re = new RegExp(`^\\[empty\\] ARG ${keys.map((k) => `${k}(=.*?)?`).join(" ")}$`);
  return re.test(kiln);
}
/** "RUN |n K=v … cmd" with each key once, the last value winning (current BuildKit). */
function dedupeRunArgs(s: string): string {
  const m = /^RUN \|(\d+) (.*)$/.exec(s);
  if (!m) return s;
  const words = m[2]!.split(" ");
  const pairs = new Map<string, string>();
  let rest = words;
  const n = Number(m[1]);
  for (let i = 0; i < n; i++) {
    // values may hold spaces: a pair runs until the next word with "=" (the last one is one word)
    let j = 1;
    while (i < n - 1 && j < rest.length && !/^[A-Za-z_][A-Za-z0-9_]*=/.test(rest[j]!)) j++;
    const pair = rest.slice(0, j).join(" ");
    pairs.set(pair.split("=")[0]!, pair);
    rest = rest.slice(j);
  }
  return `RUN |${pairs.size} ${[...pairs.values(), ...rest].join(" ")}`;
}

/** Differences every case may show, with why kiln (current BuildKit) is right. */
const GENERIC: { reason: string; test: (d: Diff) => boolean }[] = [
  {
    reason: "BuildKit ≥0.9 writes --chown/--chmod into COPY/ADD history",
    test: (d) =>
      d.kind === "history" && /(COPY|ADD) /.test(d.kiln) && stripFlags(d.kiln) === d.docker,
  },
  {
    reason:
      "current BuildKit's ARG history holds the value in effect (build arg, global or platform)",
    test: (d) =>
      d.kind === "history" && /^\[empty\] ARG /.test(d.docker) && sameArgKeys(d.docker, d.kiln),
  },
  {
    reason: "current BuildKit lists a build arg declared twice once in RUN history",
    test: (d) => d.kind === "history" && dedupeRunArgs(d.docker) === d.kiln,
  },
  {
    reason: "current BuildKit prints HEALTHCHECK history as {Test:… StartInterval:…}",
    test: (d) =>
      d.kind === "history" &&
      /HEALTHCHECK &\{/.test(d.docker) &&
      /HEALTHCHECK \{Test:/.test(d.kiln),
  },
  {
    reason: "current BuildKit prints EXPOSE history as a sorted list, not a Go map",
    test: (d) => d.kind === "history" && /EXPOSE map\[/.test(d.docker) && /EXPOSE \[/.test(d.kiln),
  },
  {
    reason: "BuildKit ≥0.11 adds the primary group to the supplementary groups (id prints groups=)",
    test: (d) => {
      const [x, y] = d.contents ?? [];
      const noGroups = (s: string) => s.replace(/ groups=\S*/, "");
      return (
        x?.startsWith("uid=") === true &&
        y !== undefined &&
        noGroups(x) === noGroups(y) &&
        d.docker.split(" ").slice(0, 3).join(" ") === d.kiln.split(" ").slice(0, 3).join(" ")
      );
    },
  },
];

export function explain(diffs: Diff[], known: KnownDiff[], peer: Peer): void {
  const generic = peer === "docker20" ? GENERIC : [];
  for (const d of diffs) {
    d.reason =
      generic.find((r) => r.test(d))?.reason ?? known.find((k) => k.pattern.test(d.text))?.reason;
  }
}

export function parseExpect(text: string): KnownDiff[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => {
      const i = l.indexOf(" => ");
      if (i < 0) throw new Error(`expect line without " => ": ${l}`);
      return { pattern: new RegExp(l.slice(0, i).trim()), reason: l.slice(i + 4).trim() };
    });
}
