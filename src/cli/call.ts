/**
 * `kiln build --call outline|targets|check[,format=json]` (buildx's subrequests): describe or
 * check the Dockerfile instead of building it. Output goes to stdout, as buildx prints it.
 */
import { resolve } from "node:path";
import { ENTITLEMENTS } from "../entitlements/index.js";
import { KilnError } from "../errors.js";
import { parseBuildArgs } from "./options.js";
import { convertDockerfile } from "../frontend/dockerfile/convert.js";
import type { LintFinding } from "../frontend/dockerfile/lint.js";
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
  method: "build" | "outline" | "targets" | "check";
  format: "text" | "json";
}

/** `outline`, `targets,format=json`, `build` (the default: a normal build). */
export function parseCallSpec(spec: string): CallSpec {
  const [method = "", ...opts] = spec.split(",");
  const m = method.trim().toLowerCase();
  if (m !== "build" && m !== "outline" && m !== "targets" && m !== "check") {
    throw new KilnError("E_FLAG", `--call ${JSON.stringify(method)} is not supported`, {
      hint: "use --call outline, targets, check or build (add ,format=json for JSON)",
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

/** What a call prints, and for a check that found something, the error it ends with. */
export interface CallOutput {
  text: string;
  failure?: KilnError;
}

/** Runs an outline/targets/check call. */
export async function runCall(
  spec: CallSpec & { method: "outline" | "targets" | "check" },
  req: CallRequest,
): Promise<CallOutput> {
  const { df, text } = await readDockerfile(req.contextDir, req.dockerfile);
  const sources = [Buffer.from(text).toString("base64")];
  if (spec.method === "targets") {
    const targets = listTargets(df);
    return {
      text:
        spec.format === "json"
          ? JSON.stringify({ ...(targetsJSON(targets) as object), sources }, null, 2) + "\n"
          : formatTargets(targets),
    };
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
    checkOnly: spec.method === "check",
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
  if (spec.method === "check") {
    const n = res.checks.length;
    return {
      text:
        spec.format === "json"
          ? JSON.stringify({ warnings: res.checks, sources }, null, 2) + "\n"
          : formatChecks(res.checks, df.file, text),
      // like buildx, a check that finds something fails the command
      failure:
        n === 0
          ? undefined
          : new KilnError(
              "E_DOCKERFILE_LINT",
              `${n} Dockerfile check${n === 1 ? "" : "s"} failed`,
              {
                hint: "fix them, or skip a rule with # check=skip=<rule>",
              },
            ),
    };
  }
  return {
    text:
      spec.format === "json"
        ? JSON.stringify({ ...(outlineJSON(res.outline) as object), sources }, null, 2) + "\n"
        : formatOutline(res.outline),
  };
}

/** Each finding with its line of the Dockerfile, then buildx's closing line. */
function formatChecks(findings: readonly LintFinding[], file: string, text: string): string {
  const lines = text.split("\n");
  const out: string[] = [];
  for (const f of findings) {
    out.push(`WARNING: ${f.rule} - ${f.message}`, `${file}:${f.line}`);
    out.push(`  ${String(f.line).padStart(4)} | ${lines[f.line - 1] ?? ""}`, "");
  }
  const n = findings.length;
  out.push(
    n === 0
      ? "Check complete, no warnings found."
      : `Check complete, ${n} warning${n === 1 ? " has" : "s have"} been found!`,
  );
  return out.join("\n") + "\n";
}

/**
 * The hook `kiln build` calls first: prints the outline/targets/check and returns true (a check
 * that found something throws after printing), or returns
 * false for `--call build` (build as usual).
 */
export async function printCall(
  context: string,
  flags: { call: string; file?: string; buildArg?: string[]; target?: string; platform?: string[] },
): Promise<boolean> {
  const spec = parseCallSpec(flags.call);
  if (spec.method === "build") return false;
  const out = await runCall(spec as CallSpec & { method: "outline" | "targets" | "check" }, {
    contextDir: resolve(context),
    dockerfile: flags.file ? resolve(flags.file) : "Dockerfile",
    buildArgs: parseBuildArgs(flags.buildArg ?? [], process.env),
    target: flags.target,
    platforms: parsePlatformList(flags.platform ?? []),
  });
  process.stdout.write(out.text);
  if (out.failure) throw out.failure;
  return true;
}
