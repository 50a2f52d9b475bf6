/**
 * `kiln build --call outline|targets[,format=json]` (buildx's subrequests): describe the
 * Dockerfile instead of building it. Output goes to stdout, as buildx prints it.
 */
import { resolve } from "node:path";
import { ENTITLEMENTS } from "../entitlements/index.js";
import { KilnError } from "../errors.js";
import { parseBuildArgs } from "./options.js";
import { convertDockerfile } from "../frontend/dockerfile/convert.js";
import { readDockerfile } from "../engine/build.js";
import {
  formatOutline,
  formatTargets,
  listTargets,
  outlineJSON,
  targetsJSON,
} from "../frontend/dockerfile/outline.js";
import { defaultSpec, parsePlatformList } from "../platform/index.js";
import type { Platform } from "../platform/types.js";

export interface CallSpec {
  method: "build" | "outline" | "targets";
  format: "text" | "json";
}

/** `outline`, `targets,format=json`, `build` (the default: a normal build). */
export function parseCallSpec(spec: string): CallSpec {
  const [method = "", ...opts] = spec.split(",");
  const m = method.trim().toLowerCase();
  if (m !== "build" && m !== "outline" && m !== "targets") {
    throw new KilnError("E_FLAG", `--call ${JSON.stringify(method)} is not supported`, {
      hint: "use --call outline, --call targets or --call build (add ,format=json for JSON)",
    });
  }
  let format: CallSpec["format"] = "text";
  for (const o of opts) {
    const [k, v] = o.split("=", 2).map((x) => x.trim().toLowerCase());
    if (k === "format" && (v === "json" || v === "text")) format = v;
    else {
      throw new KilnError("E_FLAG", `invalid --call option ${JSON.stringify(o)}`, {
        hint: "the only option is format=json or format=text",
      });
    }
  }
  return { method: m, format };
}

export interface CallRequest {
  contextDir: string;
  dockerfile: string;
  buildArgs: Record<string, string>;
  target?: string;
  platforms: Platform[];
}

/** Runs an outline/targets call and returns what to print. */
export async function runCall(
  spec: CallSpec & { method: "outline" | "targets" },
  req: CallRequest,
): Promise<string> {
  const { df, text } = await readDockerfile(req.contextDir, req.dockerfile);
  const sources = [Buffer.from(text).toString("base64")];
  if (spec.method === "targets") {
    const targets = listTargets(df);
    return spec.format === "json"
      ? JSON.stringify({ ...(targetsJSON(targets) as object), sources }, null, 2) + "\n"
      : formatTargets(targets);
  }
  const platform = req.platforms[0] ?? defaultSpec();
  const res = await convertDockerfile(df, {
    targetPlatform: platform,
    buildPlatform: defaultSpec(),
    multiPlatform: false,
    implicitTarget: req.platforms.length === 0,
    buildArgs: req.buildArgs,
    target: req.target,
    labels: {},
    network: "default",
    // an outline runs nothing: a step needing an entitlement is described, not refused
    entitlements: new Set(ENTITLEMENTS),
    extraHosts: [],
    contexts: new Map([["context", { dir: req.contextDir, excludePatterns: [] }]]),
    // The outline describes the Dockerfile's own arguments, secrets and ssh; it does not need
    // base images (BuildKit resolves them, kiln stays offline here), so every base reads as
    // an empty image of the requested platform. ONBUILD triggers of base images are not seen.
    resolveImage: (name, p) =>
      Promise.resolve({
        ref: name,
        manifestDigest: "",
        config: {
          architecture: p.architecture,
          os: p.os,
          ...(p.variant ? { variant: p.variant } : {}),
          config: {},
          // one placeholder layer so `COPY --from=<image>` has a source; nothing is pulled
          rootfs: { type: "layers", diff_ids: [`sha256:${"0".repeat(64)}`] },
        },
      }),
  });
  return spec.format === "json"
    ? JSON.stringify({ ...(outlineJSON(res.outline) as object), sources }, null, 2) + "\n"
    : formatOutline(res.outline);
}

/**
 * The hook `kiln build` calls first: prints the outline/targets and returns true, or returns
 * false for `--call build` (build as usual).
 */
export async function printCall(
  context: string,
  flags: { call: string; file?: string; buildArg?: string[]; target?: string; platform?: string[] },
): Promise<boolean> {
  const spec = parseCallSpec(flags.call);
  if (spec.method === "build") return false;
  const out = await runCall(spec as CallSpec & { method: "outline" | "targets" }, {
    contextDir: resolve(context),
    dockerfile: flags.file ? resolve(flags.file) : "Dockerfile",
    buildArgs: parseBuildArgs(flags.buildArg ?? [], process.env),
    target: flags.target,
    platforms: parsePlatformList(flags.platform ?? []),
  });
  process.stdout.write(out);
  return true;
}
