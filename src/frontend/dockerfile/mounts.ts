/**
 * RUN --mount and --device values (BuildKit instructions/commands_runmount.go and
 * commands_rundevice.go): one CSV line of key=value fields. Mount fields may contain
 * variables, so BuildKit only checks the CSV and the `from` field while parsing and types the
 * mount when the converter expands it; parseRunMount does that second step.
 */
import { posix } from "node:path";
import { DockerfileErrorCode, UnplacedError } from "./errors.js";
import { suggest } from "./text.js";
import { parseGoBool, parseGoUint32, parseRamInBytes } from "./values.js";

export type MountType = "bind" | "cache" | "tmpfs" | "secret" | "ssh";
export type MountSharing = "shared" | "private" | "locked";

const MOUNT_TYPES: readonly MountType[] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARINGS: readonly MountSharing[] = ["shared", "private", "locked"];
const MOUNT_KEYS = [
  "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode",
  "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env",
]; // prettier-ignore

/** A typed RUN --mount, fields as written after expansion (defaults: see mountDefaults). */
export interface RunMount {
  type: MountType;
  /** Stage name or image for bind/cache sources; "" = build context (bind) or scratch (cache). */
  from: string;
  source: string;
  target: string;
  readOnly: boolean;
  /** tmpfs size in bytes, 0 = unlimited. */
  sizeLimit: number;
  /** id= : cache id, or secret/ssh id. */
  id: string;
  /** "" when not given (cache mounts then share: see mountDefaults). */
  sharing: MountSharing | "";
  required: boolean;
  /** Secret exposed as this environment variable. */
  env?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface RunDevice {
  name: string;
  required: boolean;
}

function fail(message: string, needle: string, hint?: string): never {
  throw new UnplacedError(
    DockerfileErrorCode.flagValue,
    message,
    hint === undefined ? { needle } : { needle, hint },
  );
}

const CSV_HINT =
  'fields are comma-separated key=value pairs; quote a whole field that holds a comma ("target=/a,b") and double quotes inside it';

/** One CSV record (RFC 4180 quoting, no lazy quotes), as tonistiigi/go-csvvalue reads it. */
export function parseCsvFields(input: string, what: string): string[] {
  let line = input;
  if (line.endsWith("\r\n")) line = line.slice(0, -2);
  else if (line.endsWith("\n")) line = line.slice(0, -1);
  if (line === "") fail(`failed to parse csv ${what}: EOF`, input, "give key=value fields");
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    if (line[pos] !== '"') {
      const comma = line.indexOf(",", pos);
      const field = comma < 0 ? line.slice(pos) : line.slice(pos, comma);
      const q = field.indexOf('"');
      if (q >= 0) {
        fail(
          `failed to parse csv ${what}: parse error on line 1, column ${pos + q + 1}: bare " in non-quoted-field`,
          input,
          CSV_HINT,
        );
      }
      out.push(field);
      if (comma < 0) return out;
      pos = comma + 1;
      continue;
    }
    // Quoted field: "" is a literal quote, the closing quote must end the field.
    pos++;
    let field = "";
    for (;;) {
      const q = line.indexOf('"', pos);
      if (q < 0) {
        fail(
          `failed to parse csv ${what}: parse error on line 1, column ${pos + 1}: extraneous or missing " in quoted-field`,
          input,
          CSV_HINT,
        );
      }
      field += line.slice(pos, q);
      pos = q + 1;
      const after = line[pos];
      if (after === '"') {
        field += '"';
        pos++;
        continue;
      }
      if (after === ",") {
        out.push(field);
        pos++;
        break;
      }
      if (after === undefined) {
        out.push(field);
        return out;
      }
      fail(
        `failed to parse csv ${what}: parse error on line 1, column ${pos}: extraneous or missing " in quoted-field`,
        input,
        CSV_HINT,
      );
    }
  }
}

function cut(field: string): [string, string, boolean] {
  const eq = field.indexOf("=");
  return eq < 0 ? [field, "", false] : [field.slice(0, eq), field.slice(eq + 1), true];
}

/**
 * The checks BuildKit makes on a --mount value while parsing, before variables are known:
 * well-formed CSV, and no variable in `from` (stages cannot be chosen by variables).
 */
export function checkRunMount(value: string): void {
  for (const field of parseCsvFields(value, "mounts")) {
    const [key, v, ok] = cut(field);
    if (!ok || key.toLowerCase() !== "from") continue;
    const dollar = v.indexOf("$");
    if (dollar !== -1 && dollar !== v.length - 1) {
      fail(
        "'from' doesn't support variable expansion, define alias stage instead",
        field,
        "add `FROM <image-with-$VAR> AS alias` and mount from=alias",
      );
    }
  }
}

/**
 * Types a --mount value. `expand` is applied to every value (pass the stage's word expander;
 * identity when there are no variables).
 */
export function parseRunMount(value: string, expand: (word: string) => string): RunMount {
  const m: RunMount = {
    type: "bind",
    from: "",
    source: "",
    target: "",
    readOnly: false,
    sizeLimit: 0,
    id: "",
    sharing: "",
    required: false,
  };
  let roAuto = true;
  const bool = (key: string, v: string, field: string): boolean => {
    const b = parseGoBool(v);
    if (b === undefined) fail(`invalid value for ${key}: ${v}`, field);
    return b;
  };
  for (const field of parseCsvFields(value, "mounts")) {
    const [rawKey, rawValue, hasValue] = cut(field);
    const key = rawKey.toLowerCase();
    if (!hasValue) {
      if (key === "readonly" || key === "ro") {
        m.readOnly = true;
        roAuto = false;
      } else if (key === "readwrite" || key === "rw") {
        m.readOnly = false;
        roAuto = false;
      } else if (key === "required") {
        if (m.type !== "secret" && m.type !== "ssh") {
          fail(`unexpected key '${key}' for mount type '${m.type}'`, field);
        }
        m.required = true;
      } else {
        fail(`invalid field '${field}' must be a key=value pair`, field);
      }
      continue;
    }
    const v = expand(rawValue);
    switch (key) {
      case "type": {
        const t = v.toLowerCase() as MountType;
        if (!MOUNT_TYPES.includes(t)) {
          const near = suggest(v, MOUNT_TYPES, true);
          fail(
            `unsupported mount type ${JSON.stringify(v)}${near === undefined ? "" : ` (did you mean ${near}?)`}`,
            field,
            `type is one of ${MOUNT_TYPES.join(", ")}`,
          );
        }
        m.type = t;
        break;
      }
      case "from":
        m.from = v;
        break;
      case "source":
      case "src":
        m.source = v;
        break;
      case "target":
      case "dst":
      case "destination":
        m.target = v;
        break;
      case "readonly":
      case "ro":
        m.readOnly = bool(key, v, field);
        roAuto = false;
        break;
      case "readwrite":
      case "rw":
        m.readOnly = !bool(key, v, field);
        roAuto = false;
        break;
      case "required":
        if (m.type !== "secret" && m.type !== "ssh") {
          fail(`unexpected key '${key}' for mount type '${m.type}'`, field);
        }
        m.required = bool(key, v, field);
        break;
      case "size": {
        if (m.type !== "tmpfs") fail(`unexpected key '${key}' for mount type '${m.type}'`, field);
        const size = parseRamInBytes(v);
        if (size === undefined) fail(`invalid value for ${key}: ${v}`, field, "e.g. size=64m");
        m.sizeLimit = size;
        break;
      }
      case "id":
        m.id = v;
        break;
      case "sharing": {
        const s = v.toLowerCase() as MountSharing;
        if (!SHARINGS.includes(s)) {
          const near = suggest(v, SHARINGS, true);
          fail(
            `unsupported sharing value ${JSON.stringify(v)}${near === undefined ? "" : ` (did you mean ${near}?)`}`,
            field,
            `sharing is one of ${SHARINGS.join(", ")}`,
          );
        }
        m.sharing = s;
        break;
      }
      case "mode": {
        const mode = parseGoUint32(v, 8);
        if (mode === undefined)
          fail(`invalid value ${v} for mode`, field, "mode is octal, e.g. 0644");
        m.mode = mode;
        break;
      }
      case "uid":
      case "gid": {
        const id = parseGoUint32(v, 10);
        if (id === undefined) fail(`invalid value ${v} for ${key}`, field);
        m[key] = id;
        break;
      }
      case "env":
        m.env = v;
        break;
      default: {
        const near = suggest(key, MOUNT_KEYS, true);
        fail(
          `unexpected key '${key}' in '${field}'${near === undefined ? "" : ` (did you mean ${near}?)`}`,
          field,
          `mount keys: ${MOUNT_KEYS.join(", ")}`,
        );
      }
    }
  }

  if (m.type !== "secret" && m.type !== "ssh" && m.type !== "cache") {
    for (const k of ["mode", "uid", "gid"] as const) {
      if (m[k] !== undefined) fail(`${k} not allowed for ${JSON.stringify(m.type)} type mounts`, k);
    }
  }
  if (roAuto) m.readOnly = m.type !== "cache" && m.type !== "tmpfs";
  if (m.type === "secret") {
    if (m.from !== "") fail("secret mount should not have a from", "from");
    if (m.sharing !== "") fail("secret mount should not define sharing", "sharing");
    if (m.source === "" && m.target === "" && m.id === "") {
      fail("invalid secret mount. one of source, target required", value);
    }
    if (m.source !== "" && m.id !== "") fail("both source and id can't be set", "id");
  }
  if (m.sharing !== "" && m.type !== "cache") {
    fail(`invalid cache sharing set for ${m.type} mount`, "sharing");
  }
  return m;
}

/** The values BuildKit's converter fills in for fields a mount leaves empty. */
export interface MountDefaults {
  /** cache: id or the cleaned target; secret: source, id, or the target's base name; ssh: id or "default". */
  id: string;
  /** cache: "shared" unless set. */
  sharing: MountSharing;
  /** secret: target, else /run/secrets/<id> unless exposed only as env; others: target. */
  target: string | undefined;
  /** secret: 0400, ssh: 0600 when uid/gid given without mode; cache dir: 0755. */
  mode: number | undefined;
}

export function mountDefaults(m: RunMount): MountDefaults {
  switch (m.type) {
    case "cache":
      return {
        id: m.id !== "" ? m.id : posix.normalize(m.target).replace(/(.)\/$/, "$1"),
        sharing: m.sharing === "" ? "shared" : m.sharing,
        target: m.target,
        mode: m.mode ?? 0o755,
      };
    case "secret": {
      const id = m.source !== "" ? m.source : m.id !== "" ? m.id : posix.basename(m.target);
      const target =
        m.target !== ""
          ? m.target
          : m.env === undefined
            ? `/run/secrets/${posix.basename(id)}`
            : undefined;
      const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined;
      return { id, sharing: "shared", target, mode: fileOpts ? (m.mode ?? 0o400) : undefined };
    }
    case "ssh": {
      const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined;
      return {
        id: m.id !== "" ? m.id : "default",
        sharing: "shared",
        target: m.target === "" ? undefined : m.target,
        mode: fileOpts ? (m.mode ?? 0o600) : undefined,
      };
    }
    default:
      return { id: m.id, sharing: "shared", target: m.target, mode: m.mode };
  }
}

/** A RUN --device value: `name[,required[=bool]]` or `name=...,required=...`. */
export function parseRunDevice(value: string): RunDevice {
  const d: RunDevice = { name: "", required: false };
  for (const field of parseCsvFields(value, "devices")) {
    const [rawKey, v, hasValue] = cut(field);
    const key = rawKey.toLowerCase();
    if (!hasValue) {
      if (key === "required") d.required = true;
      else if (d.name === "") d.name = field;
      else fail(`invalid field '${field}' must be a key=value pair`, field);
      continue;
    }
    if (key === "name") {
      if (d.name !== "") fail(`device name already set to ${d.name}`, field);
      d.name = v;
    } else if (key === "required") {
      const b = parseGoBool(v);
      if (b === undefined) fail(`invalid value for ${key}: ${v}`, field);
      d.required = b;
    } else if (d.name === "") {
      d.name = field;
    } else {
      fail(`unexpected key '${key}' in '${field}'`, field, "device keys: name, required");
    }
  }
  return d;
}
