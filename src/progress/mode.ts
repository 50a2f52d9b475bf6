import { KilnError } from "../errors.js";
import type { ProgressSink } from "./events.js";
import type { Output } from "./output.js";
import { PlainRenderer } from "./plain.js";
import { QuietRenderer, RawJsonRenderer } from "./simple.js";
import { colorEnabled } from "./terminal.js";
import { TtyRenderer, type TtyOptions } from "./tty.js";

export const progressModes = ["auto", "tty", "plain", "rawjson", "quiet"] as const;
export type ProgressMode = (typeof progressModes)[number];
export type ResolvedProgressMode = Exclude<ProgressMode, "auto">;

export interface RendererOptions extends Omit<TtyOptions, "color"> {
  /** Environment for `NO_COLOR`, `TERM`, `CI`, `KILN_PROGRESS`, `BUILDKIT_PROGRESS`. */
  env?: NodeJS.ProcessEnv;
  /** Overrides `NO_COLOR`. */
  color?: boolean;
}

export function parseProgressMode(s: string, source = "--progress"): ProgressMode {
  const mode = s.trim().toLowerCase();
  if ((progressModes as readonly string[]).includes(mode)) return mode as ProgressMode;
  throw new KilnError("E_PROGRESS_MODE", `${source}: unknown progress mode "${s}"`, {
    hint: `use one of: ${progressModes.join(", ")}`,
  });
}

/** The mode when none is asked for: `KILN_PROGRESS`, else `BUILDKIT_PROGRESS`, else auto. */
export function defaultProgressMode(env: NodeJS.ProcessEnv = process.env): ProgressMode {
  for (const name of ["KILN_PROGRESS", "BUILDKIT_PROGRESS"]) {
    const v = env[name];
    if (v !== undefined && v !== "") return parseProgressMode(v, name);
  }
  return "auto";
}

/** `auto` is the live view on an interactive terminal, plain text anywhere else (files, CI). */
export function resolveProgressMode(
  mode: ProgressMode | undefined,
  out: Output,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedProgressMode {
  const m = mode ?? defaultProgressMode(env);
  if (m !== "auto") return m;
  const isTTY = (out as { isTTY?: boolean }).isTTY === true;
  const ci = env.CI !== undefined && env.CI !== "";
  return isTTY && env.TERM !== "dumb" && !ci ? "tty" : "plain";
}

/**
 * A renderer for `mode` writing to `out`; `undefined` takes the mode from the environment.
 * An explicit `tty` is honoured on any stream (80×24 when it has no size).
 */
export function createRenderer(
  mode: ProgressMode | undefined,
  out: Output,
  opts: RendererOptions = {},
): ProgressSink {
  const env = opts.env ?? process.env;
  switch (resolveProgressMode(mode, out, env)) {
    case "tty":
      return new TtyRenderer(out, { ...opts, color: opts.color ?? colorEnabled(env) });
    case "plain":
      return new PlainRenderer(out, opts);
    case "rawjson":
      return new RawJsonRenderer(out);
    case "quiet":
      return new QuietRenderer(out);
  }
}
