/**
 * buildx's attestation flags: `--provenance`, `--sbom` and `--attest type=…,…`. Without a
 * provenance flag buildx asks for `mode=min,inline-only=true` (unless
 * BUILDX_NO_DEFAULT_ATTESTATIONS is set); an explicit request gets BuildKit's defaults
 * (mode=max, SLSA v1).
 */
import type { AttestRequest, ProvenanceRequest, SbomRequest } from "../attest/index.js";
import { KilnError } from "../errors.js";
import { splitCSV } from "./options.js";

export interface AttestFlags {
  provenance?: string;
  sbom?: string;
  attest: readonly string[];
}

function flagError(flag: string, value: string, why: string, hint?: string): KilnError {
  return new KilnError("E_FLAG", `invalid ${flag} value ${JSON.stringify(value)}: ${why}`, {
    hint:
      hint ??
      "write --attest type=provenance,mode=min|max[,version=v1|v0.2][,builder-id=…] or --attest type=sbom",
  });
}

function parseBool(v: string): boolean | undefined {
  const s = v.trim().toLowerCase();
  if (["1", "t", "true"].includes(s)) return true;
  if (["0", "f", "false"].includes(s)) return false;
  return undefined;
}

/** CSV fields (quoting as buildx's csvvalue) → key/value pairs. */
function fields(flag: string, value: string): [string, string][] {
  return splitCSV(value).map((f) => {
    const eq = f.indexOf("=");
    if (eq < 0) throw flagError(flag, value, `${JSON.stringify(f)} is not KEY=VALUE`);
    return [f.slice(0, eq).trim().toLowerCase(), f.slice(eq + 1)];
  });
}

/** `--provenance VALUE` / `--sbom VALUE` as buildx rewrites them into an --attest value. */
function canonical(type: string, value: string): string {
  const b = parseBool(value);
  if (b !== undefined) return `type=${type},disabled=${!b}`;
  return `type=${type},${value}`;
}

interface ParsedAttest {
  type: string;
  disabled: boolean;
  attrs: Map<string, string>;
  raw: string;
}

function parseOne(value: string): ParsedAttest {
  const a: ParsedAttest = { type: "", disabled: false, attrs: new Map(), raw: value };
  for (const [k, v] of fields("--attest", value)) {
    if (k === "type") a.type = v.trim().toLowerCase();
    else if (k === "disabled") {
      const b = parseBool(v);
      if (b === undefined) throw flagError("--attest", value, "disabled= takes true or false");
      a.disabled = b;
    } else a.attrs.set(k, v);
  }
  if (a.type === "") throw flagError("--attest", value, "attestation type not specified");
  if (a.type !== "provenance" && a.type !== "sbom") {
    throw flagError("--attest", value, `unknown attestation type ${JSON.stringify(a.type)}`);
  }
  return a;
}

function provenanceFrom(a: ParsedAttest): ProvenanceRequest {
  const p: ProvenanceRequest = {
    mode: "max",
    version: "v1",
    reproducible: false,
    inlineOnly: false,
    filename: "provenance.json",
  };
  for (const [k, v] of a.attrs) {
    switch (k) {
      case "mode":
        if (v === "full" || v === "max") p.mode = "max";
        else if (v === "min") p.mode = "min";
        else throw flagError("--attest", a.raw, `invalid mode ${JSON.stringify(v)}`);
        break;
      case "version":
        if (v !== "v1" && v !== "v0.2") {
          throw flagError(
            "--attest",
            a.raw,
            `invalid provenance SLSA version ${JSON.stringify(v)}`,
            "use version=v1 or version=v0.2",
          );
        }
        p.version = v;
        break;
      case "builder-id":
        p.builderId = v;
        break;
      case "reproducible":
      case "inline-only": {
        const b = parseBool(v);
        if (b === undefined) throw flagError("--attest", a.raw, `${k}= takes true or false`);
        if (k === "reproducible") p.reproducible = b;
        else p.inlineOnly = b;
        break;
      }
      case "filename":
        p.filename = v;
        break;
      default:
        throw flagError(
          "--attest",
          a.raw,
          `unknown provenance attribute ${JSON.stringify(k)}`,
          "provenance takes mode, version, builder-id, reproducible, inline-only and filename",
        );
    }
  }
  return p;
}

function sbomFrom(a: ParsedAttest): SbomRequest {
  for (const [k, v] of a.attrs) {
    if (k === "generator") {
      throw flagError(
        "--attest",
        a.raw,
        `kiln has no SBOM generator images (${v})`,
        "drop generator=: kiln scans the image with its built-in scanner (dpkg, apk, npm, Python, Go)",
      );
    }
    throw flagError(
      "--attest",
      a.raw,
      `unknown sbom attribute ${JSON.stringify(k)}`,
      "write --attest type=sbom (or --sbom=true)",
    );
  }
  return { filename: "sbom.spdx.json" };
}

/**
 * The attestations of `kiln build` flags, as buildx computes them: later --attest values of a
 * type replace earlier ones, `disabled=true` (or `--provenance=false`) turns a type off.
 */
export function parseAttestFlags(
  f: AttestFlags,
  env: NodeJS.ProcessEnv = process.env,
): AttestRequest {
  const values = [...f.attest];
  if (f.provenance !== undefined && f.provenance !== "")
    values.push(canonical("provenance", f.provenance));
  if (f.sbom !== undefined && f.sbom !== "") values.push(canonical("sbom", f.sbom));
  const byType = new Map<string, ParsedAttest>();
  for (const v of values) {
    const a = parseOne(v);
    byType.set(a.type, a);
  }
  const req: AttestRequest = {};
  const prov = byType.get("provenance");
  if (prov === undefined) {
    const off = env.BUILDX_NO_DEFAULT_ATTESTATIONS;
    const noDefault = off !== undefined && off !== "" ? parseBool(off) : false;
    if (noDefault === undefined) {
      throw new KilnError(
        "E_FLAG",
        `invalid BUILDX_NO_DEFAULT_ATTESTATIONS ${JSON.stringify(off)}`,
        {
          hint: "set it to 1 or true to build without the default provenance",
        },
      );
    }
    if (!noDefault) {
      req.provenance = provenanceFrom({
        type: "provenance",
        disabled: false,
        attrs: new Map([
          ["mode", "min"],
          ["inline-only", "true"],
        ]),
        raw: "mode=min,inline-only=true",
      });
    }
  } else if (!prov.disabled) req.provenance = provenanceFrom(prov);
  const sbom = byType.get("sbom");
  if (sbom !== undefined && !sbom.disabled) req.sbom = sbomFrom(sbom);
  return req;
}
