/**
 * BuildKit's `outline` and `targets` subrequests (buildx `--call outline|targets`): what a
 * target needs from the caller (build args with defaults and doc comments, secrets, ssh) and
 * which stages a Dockerfile offers. JSON shapes and text tables follow BuildKit's printers.
 */
import type { Dockerfile } from "./instructions.js";

export interface OutlineArg {
  name: string;
  description?: string;
  value?: string;
  line: number;
}

export interface OutlineMount {
  name: string;
  required?: boolean;
  line: number;
}

export interface Outline {
  name?: string;
  description?: string;
  args: OutlineArg[];
  secrets: OutlineMount[];
  ssh: OutlineMount[];
}

export interface TargetInfo {
  name?: string;
  default?: boolean;
  description?: string;
  base: string;
  platform?: string;
  line: number;
}

/** The doc comment for `name`: a comment line above the instruction that starts with it. */
export function docComment(comments: readonly string[], name: string | undefined): string {
  if (!name) return "";
  for (const line of comments) {
    if (line.startsWith(name + " ")) return line.slice(name.length + 1);
  }
  return "";
}

/** Every stage of the Dockerfile, the last one marked default (no image resolution needed). */
export function listTargets(df: Dockerfile): TargetInfo[] {
  return df.stages.map((s, i) => {
    const t: TargetInfo = { base: s.baseName, line: s.location.startLine };
    if (s.name) t.name = s.name;
    if (i === df.stages.length - 1) t.default = true;
    const description = docComment(s.comments, s.name);
    if (description) t.description = description;
    if (s.platform !== undefined) t.platform = s.platform;
    return t;
  });
}

/** Go's text/tabwriter with minwidth 0, tabwidth 0, padding `pad`, padchar ' ', no flags. */
function table(rows: string[][], pad: number): string {
  // tabwriter measures cells in runes
  const width = (c: string): number => Array.from(c).length;
  const widths: number[] = [];
  for (const r of rows) {
    // the last cell of a row is not a column (no tab after it): it is never padded
    r.slice(0, -1).forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, width(c))));
  }
  return rows
    .map(
      (r) =>
        r
          .map((c, i) => (i < r.length - 1 ? c + " ".repeat(widths[i]! + pad - width(c)) : c))
          .join("") + "\n",
    )
    .join("");
}

export function formatTargets(targets: readonly TargetInfo[]): string {
  const rows = [["TARGET", "DESCRIPTION"]];
  for (const t of targets) {
    let name = t.name ?? "";
    if (name === "" && t.default) name = "(default)";
    else if (t.default) name = `${name} (default)`;
    rows.push([name, t.description ?? ""]);
  }
  return table(rows, 1);
}

export function formatOutline(o: Outline): string {
  let out = "";
  if (o.name || o.description) {
    const rows = [["TARGET:", o.name || "(default)"]];
    if (o.description) rows.push(["DESCRIPTION:", o.description]);
    out += table(rows, 1) + "\n";
  }
  if (o.args.length) {
    const rows = [["BUILD ARG", "VALUE", "DESCRIPTION"]];
    for (const a of o.args) rows.push([a.name, a.value ?? "", a.description ?? ""]);
    out += table(rows, 3) + "\n";
  }
  for (const [title, list] of [
    ["SECRET", o.secrets],
    ["SSH", o.ssh],
  ] as const) {
    if (!list.length) continue;
    const rows = [[title, "REQUIRED"]];
    for (const s of list) rows.push([s.name, s.required ? "true" : ""]);
    out += table(rows, 3) + "\n";
  }
  return out;
}

/** BuildKit's JSON for the outline (locations as line numbers of the Dockerfile). */
export function outlineJSON(o: Outline): unknown {
  const loc = (line: number): unknown => ({
    ranges: [{ start: { line }, end: { line } }],
  });
  const strip = <T extends { line: number }>(x: T): Omit<T, "line"> & { location: unknown } => {
    const { line, ...rest } = x;
    return { ...rest, location: loc(line) };
  };
  return {
    ...(o.name ? { name: o.name } : {}),
    ...(o.description ? { description: o.description } : {}),
    ...(o.args.length ? { args: o.args.map(strip) } : {}),
    ...(o.secrets.length ? { secrets: o.secrets.map(strip) } : {}),
    ...(o.ssh.length ? { ssh: o.ssh.map(strip) } : {}),
  };
}

export function targetsJSON(targets: readonly TargetInfo[]): unknown {
  return {
    targets: targets.map(({ line, ...t }) => ({
      ...t,
      location: { ranges: [{ start: { line }, end: { line } }] },
    })),
  };
}
