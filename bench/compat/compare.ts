// What differs between the peer's image and kiln's, and which differences are by design: the
// peer is Docker 20.10's BuildKit (v0.8); where current BuildKit changed behaviour, kiln follows
// current BuildKit and the difference is explained here (generic rules) or in a case's `expect`
// file (lines "<regex> => <reason>", matched against the text of one difference).
import type { ImageSummary } from "./image.js";

/** `started`: seconds when the build began; files stamped later were made by the build. */
export type Outcome =
  { ok: true; image: ImageSummary; started: number } | { ok: false; error: string };

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

export function compare(d: Outcome, k: Outcome): Diff[] {
  if (!d.ok && !k.ok) return [];
  if (!d.ok || !k.ok) {
    // what kiln made is then checked by eye against current BuildKit: show its small files
    const made = k.ok
      ? Object.entries(k.image.small)
          .filter(([p]) => !p.startsWith("etc/"))
          .map(([p, c]) => `\n      kiln /${p}: ${JSON.stringify(c)}`)
          .join("")
      : "";
    const text = !d.ok
      ? `docker failed, kiln built:\n      ${indent(d.error)}${made}`
      : `kiln failed, docker built:\n      ${indent(k.ok ? "" : k.error)}`;
    return [{ kind: "build", docker: d.ok ? "ok" : d.error, kiln: k.ok ? "ok" : k.error, text }];
  }
  const a = d.image;
  const b = k.image;
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
  for (const p of new Set([...Object.keys(a.tree), ...Object.keys(b.tree)])) {
    const x = a.tree[p];
    const y = b.tree[p];
    if (x !== y) {
      let text = `/${p}: docker ${x ?? "(absent)"} | kiln ${y ?? "(absent)"}`;
      const ca = a.small[p];
      const cb = b.small[p];
      if (x?.startsWith("file") && y?.startsWith("file") && ca !== cb)
        text += `\n      contents: docker ${show(ca)} | kiln ${show(cb)}`;
      diffs.push({
        kind: "tree",
        docker: x ?? "(absent)",
        kiln: y ?? "(absent)",
        text,
        contents: [ca, cb],
      });
      continue;
    }
    // Only stamps older than the build came from the context (or an archive) and must agree.
    const ma = a.mtimes[p];
    const mb = b.mtimes[p];
    if (ma !== undefined && mb !== undefined && ma < d.started - 1 && ma !== mb)
      add("mtime", String(ma), String(mb), `/${p} mtime: docker ${ma} | kiln ${mb}`);
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

export function explain(diffs: Diff[], known: KnownDiff[]): void {
  for (const d of diffs) {
    d.reason =
      GENERIC.find((r) => r.test(d))?.reason ?? known.find((k) => k.pattern.test(d.text))?.reason;
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
