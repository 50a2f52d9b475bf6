/**
 * Instruction flags (`--name=value`) with BuildKit's BFlags rules: each instruction declares
 * its flags, unknown names are rejected with a suggestion, bool flags take `--x`, `--x=true`
 * or `--x=false`, string flags need `=value`, list flags may repeat, and `--` stops parsing.
 */
import { DockerfileErrorCode, UnplacedError } from "./errors.js";
import { suggest } from "./text.js";

export type FlagKind = "bool" | "string" | "strings";

function failure(code: string, message: string, needle: string, hint?: string): UnplacedError {
  return new UnplacedError(code, message, hint === undefined ? { needle } : { needle, hint });
}

export interface ParsedFlags {
  /** Names given on the instruction (for list flags: once). */
  used: Set<string>;
  bool(name: string): boolean;
  /** The value of a string flag, "" when not given. */
  string(name: string): string;
  /** Every value of a repeatable flag, in order. */
  strings(name: string): string[];
}

export function parseFlags(
  raw: readonly string[],
  spec: Readonly<Record<string, FlagKind>>,
  instruction: string,
): ParsedFlags {
  const values = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const used = new Set<string>();
  const names = Object.keys(spec);
  for (const a of raw) {
    if (a === "--") break; // POSIX end of options
    if (!a.startsWith("--")) {
      throw failure(DockerfileErrorCode.flagValue, `arg should start with -- : ${a}`, a);
    }
    const eq = a.indexOf("=");
    const flagName = eq < 0 ? a : a.slice(0, eq);
    const hasValue = eq >= 0;
    const value = hasValue ? a.slice(eq + 1) : "";
    const name = flagName.slice(2);
    const kind = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (kind === undefined) {
      const near = suggest(name, names, true);
      const allowed =
        names.length === 0
          ? `${instruction} takes no flags`
          : `${instruction} accepts ${names.map((n) => "--" + n).join(", ")}`;
      throw failure(
        DockerfileErrorCode.unknownFlag,
        `unknown flag: ${flagName}${near === undefined ? "" : ` (did you mean --${near}?)`}`,
        flagName,
        allowed,
      );
    }
    if (used.has(name) && kind !== "strings") {
      throw failure(
        DockerfileErrorCode.flagValue,
        `duplicate flag specified: ${flagName}`,
        flagName,
        `give ${flagName} once`,
      );
    }
    used.add(name);
    if (kind === "bool") {
      if (hasValue && value === "") {
        throw failure(DockerfileErrorCode.flagValue, `missing a value on flag: ${flagName}`, a);
      }
      const v = value.toLowerCase();
      if (v !== "" && v !== "true" && v !== "false") {
        throw failure(
          DockerfileErrorCode.flagValue,
          `expecting boolean value for flag ${flagName}, not: ${value}`,
          a,
          `use ${flagName}, ${flagName}=true or ${flagName}=false`,
        );
      }
      values.set(name, v === "false" ? "false" : "true");
      continue;
    }
    if (!hasValue) {
      throw failure(
        DockerfileErrorCode.flagValue,
        `missing a value on flag: ${flagName}`,
        a,
        `write ${flagName}=<value>`,
      );
    }
    if (kind === "string") values.set(name, value);
    else lists.set(name, [...(lists.get(name) ?? []), value]);
  }
  return {
    used,
    bool: (name) => values.get(name) === "true",
    string: (name) => values.get(name) ?? "",
    strings: (name) => lists.get(name) ?? [],
  };
}
