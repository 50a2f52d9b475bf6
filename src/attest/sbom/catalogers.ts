/**
 * The package databases the SBOM scanner reads, one parser per ecosystem: dpkg (status file
 * and distroless status.d/), apk (installed db), npm (node_modules/…/package.json), Python
 * (*.dist-info/METADATA, *.egg-info/PKG-INFO) and Go (build info of ELF binaries). Files are
 * read line by line or in bounded pieces, never whole when they can be large.
 */
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createInterface } from "node:readline";
import { formatPurl } from "../purl.js";

export type Ecosystem = "deb" | "apk" | "npm" | "python" | "go";

export interface FoundPackage {
  ecosystem: Ecosystem;
  name: string;
  version: string;
  purl: string;
  /** the licence as the metadata states it (normalized later) */
  license?: string;
  description?: string;
  /** the file it was found in, absolute in the image (`/var/lib/dpkg/status`) */
  location: string;
}

export interface Distro {
  id: string;
  versionId?: string;
}

/** Largest JSON/metadata file read whole (package.json); bigger ones are not packages. */
const MAX_SMALL_FILE = 1 << 20;

async function* lines(path: string): AsyncGenerator<string> {
  const rl = createInterface({
    input: createReadStream(path, { encoding: "utf8" }),
    crlfDelay: Infinity,
  });
  try {
    for await (const l of rl) yield l;
  } finally {
    rl.close();
  }
}

/** RFC 822-style stanzas (dpkg status, METADATA headers): field → value, continuation lines kept. */
async function* stanzas(path: string, stopAtFirst = false): AsyncGenerator<Map<string, string>> {
  let cur = new Map<string, string>();
  let last: string | undefined;
  for await (const l of lines(path)) {
    if (l.trim() === "") {
      if (cur.size > 0) {
        yield cur;
        if (stopAtFirst) return;
      }
      cur = new Map();
      last = undefined;
      continue;
    }
    if ((l.startsWith(" ") || l.startsWith("\t")) && last !== undefined) {
      cur.set(last, `${cur.get(last)}\n${l.trim()}`);
      continue;
    }
    const colon = l.indexOf(":");
    if (colon <= 0) continue;
    last = l.slice(0, colon);
    // METADATA may repeat a header (Classifier); the first of each is enough here
    if (!cur.has(last)) cur.set(last, l.slice(colon + 1).trim());
  }
  if (cur.size > 0) yield cur;
}

export async function readSmall(path: string, max = MAX_SMALL_FILE): Promise<Buffer | undefined> {
  const fh = await open(path, "r");
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > max) return undefined;
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** /etc/os-release → the distro purls name (`debian`, `alpine`). */
export async function readOsRelease(path: string): Promise<Distro | undefined> {
  const buf = await readSmall(path, 64 << 10).catch(() => undefined);
  if (buf === undefined) return undefined;
  const vars = new Map<string, string>();
  for (const l of buf.toString("utf8").split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(l.trim());
    if (m) vars.set(m[1]!, m[2]!.replace(/^["']|["']$/g, ""));
  }
  const id = vars.get("ID");
  return id ? { id, versionId: vars.get("VERSION_ID") } : undefined;
}

function distroQualifier(d: Distro | undefined): string | undefined {
  return d === undefined ? undefined : d.versionId ? `${d.id}-${d.versionId}` : d.id;
}

/** dpkg's status file (or one file of status.d/): installed packages only. */
export async function* dpkgPackages(
  path: string,
  location: string,
  distro: Distro | undefined,
): AsyncGenerator<FoundPackage> {
  for await (const s of stanzas(path)) {
    const name = s.get("Package");
    const version = s.get("Version");
    if (!name || !version) continue;
    const status = s.get("Status");
    // status.d files have no Status field: everything listed there is installed
    if (status !== undefined && !/\binstalled$/.test(status)) continue;
    const source = s.get("Source")?.split(" ")[0];
    yield {
      ecosystem: "deb",
      name,
      version,
      purl: formatPurl({
        type: "deb",
        namespace: distro?.id ?? "debian",
        name,
        version,
        qualifiers: {
          arch: s.get("Architecture"),
          distro: distroQualifier(distro),
          upstream: source && source !== name ? source : undefined,
        },
      }),
      description: s.get("Description")?.split("\n")[0],
      location,
    };
  }
}

/** apk's installed database: `P:name`, `V:version`, `A:arch`, `L:license`, `T:description`. */
export async function* apkPackages(
  path: string,
  location: string,
  distro: Distro | undefined,
): AsyncGenerator<FoundPackage> {
  let cur = new Map<string, string>();
  const emit = (): FoundPackage | undefined => {
    const name = cur.get("P");
    const version = cur.get("V");
    if (!name || !version) return undefined;
    const origin = cur.get("o");
    return {
      ecosystem: "apk",
      name,
      version,
      purl: formatPurl({
        type: "apk",
        namespace: distro?.id ?? "alpine",
        name,
        version,
        qualifiers: {
          arch: cur.get("A"),
          distro: distroQualifier(distro),
          upstream: origin && origin !== name ? origin : undefined,
        },
      }),
      license: cur.get("L"),
      description: cur.get("T"),
      location,
    };
  };
  for await (const l of lines(path)) {
    if (l.trim() === "") {
      const p = emit();
      if (p) yield p;
      cur = new Map();
      continue;
    }
    const m = /^([A-Za-z]):(.*)$/.exec(l);
    if (m && !cur.has(m[1]!)) cur.set(m[1]!, m[2]!);
  }
  const p = emit();
  if (p) yield p;
}

function npmLicense(json: Record<string, unknown>): string | undefined {
  const l = json.license;
  if (typeof l === "string") return l;
  if (l && typeof l === "object" && typeof (l as { type?: unknown }).type === "string")
    return (l as { type: string }).type;
  const ls = json.licenses;
  if (Array.isArray(ls)) {
    const types = ls
      .map((x: unknown) =>
        x && typeof x === "object"
          ? (x as { type?: unknown }).type
          : typeof x === "string"
            ? x
            : undefined,
      )
      .filter((t): t is string => typeof t === "string");
    if (types.length > 0) return types.length === 1 ? types[0] : `(${types.join(" OR ")})`;
  }
  return undefined;
}

/** One node_modules/<name>/package.json (or node_modules/@scope/<name>/package.json). */
export async function npmPackage(
  path: string,
  location: string,
): Promise<FoundPackage | undefined> {
  const buf = await readSmall(path);
  if (buf === undefined) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(buf.toString("utf8")) as Record<string, unknown>;
  } catch {
    return undefined; // not a package manifest we can read; a scanner does not fail the build
  }
  const name = json.name;
  const version = json.version;
  if (typeof name !== "string" || typeof version !== "string" || name === "") return undefined;
  const scoped = /^(@[^/]+)\/(.+)$/.exec(name);
  return {
    ecosystem: "npm",
    name,
    version,
    purl: formatPurl({
      type: "npm",
      namespace: scoped?.[1],
      name: scoped?.[2] ?? name,
      version,
    }),
    license: npmLicense(json),
    description: typeof json.description === "string" ? json.description : undefined,
    location,
  };
}

/** PEP 503 normalized name, as purls of type pypi use it. */
function pypiName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

/** *.dist-info/METADATA or *.egg-info/PKG-INFO (or a lone *.egg-info file): the header block. */
export async function pythonPackage(
  path: string,
  location: string,
): Promise<FoundPackage | undefined> {
  for await (const h of stanzas(path, true)) {
    const name = h.get("Name");
    const version = h.get("Version");
    if (!name || !version) return undefined;
    const license = h.get("License-Expression") ?? h.get("License");
    return {
      ecosystem: "python",
      name,
      version,
      purl: formatPurl({ type: "pypi", name: pypiName(name), version }),
      // a multi-line License is the licence text itself; its first line names it at best
      license: license?.split("\n")[0],
      description: h.get("Summary"),
      location,
    };
  }
  return undefined;
}
