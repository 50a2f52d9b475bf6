/**
 * kiln's SBOM scanner: walks a root filesystem (streaming the directory tree, never following
 * symlinks) and hands each package database it meets to its cataloger (catalogers.ts,
 * golang.ts). BuildKit runs a scanner image for this; kiln has its own.
 */
import { opendir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  apkPackages,
  dpkgPackages,
  npmPackage,
  pythonPackage,
  readOsRelease,
  type Distro,
  type FoundPackage,
} from "./catalogers.js";
import { goPackages } from "./golang.js";

/** Executables smaller than this cannot be Go binaries (not worth opening). */
const MIN_GO_BINARY = 64 << 10;

async function distroOf(root: string): Promise<Distro | undefined> {
  return (
    (await readOsRelease(join(root, "etc/os-release"))) ??
    (await readOsRelease(join(root, "usr/lib/os-release")))
  );
}

/** Paths a scan leaves out (the build context's .dockerignore). */
export interface ScanFilter {
  /** relative path (no leading slash) excluded? */
  excluded(rel: string): boolean;
  patterns: readonly string[];
}

/** Every package found under `root`, in walk order (directories sorted by name). */
export async function scanPackages(root: string, filter?: ScanFilter): Promise<FoundPackage[]> {
  // an excluded directory can hold re-included paths only when some pattern is an exception
  const pruneDirs = filter !== undefined && !filter.patterns.some((p) => p.startsWith("!"));
  const distro = await distroOf(root);
  const found: FoundPackage[] = [];
  const seen = new Set<string>();
  const add = (p: FoundPackage | undefined): void => {
    if (p === undefined) return;
    const key = `${p.purl} ${p.location}`;
    if (seen.has(key)) return;
    seen.add(key);
    found.push(p);
  };
  // an explicit stack: image trees can be deeper than recursion is comfortable with
  const stack: string[] = [""];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const dir = await opendir(join(root, rel)).catch(() => undefined);
    if (dir === undefined) continue;
    const subdirs: string[] = [];
    for await (const e of dir) {
      const path = rel === "" ? e.name : `${rel}/${e.name}`;
      const excluded = filter?.excluded(path) ?? false;
      if (e.isDirectory()) {
        if (excluded && pruneDirs) continue;
        subdirs.push(path);
        continue;
      }
      if (!e.isFile() || excluded) continue;
      for (const p of await catalog(root, path, e.name, rel, distro)) add(p);
    }
    // pop order = sorted order
    stack.push(...subdirs.sort().reverse());
  }
  return found;
}

function parentName(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

async function catalog(
  root: string,
  path: string,
  name: string,
  dir: string,
  distro: Distro | undefined,
): Promise<FoundPackage[]> {
  const abs = join(root, path);
  const location = `/${path}`;
  const all = async (g: AsyncGenerator<FoundPackage>): Promise<FoundPackage[]> => {
    const out: FoundPackage[] = [];
    for await (const p of g) out.push(p);
    return out;
  };
  try {
    if (path === "var/lib/dpkg/status") return await all(dpkgPackages(abs, location, distro));
    if (dir === "var/lib/dpkg/status.d" && !name.endsWith(".md5sums"))
      return await all(dpkgPackages(abs, location, distro));
    if (path === "lib/apk/db/installed") return await all(apkPackages(abs, location, distro));
    if (name === "package.json") {
      const up = dir.slice(0, Math.max(0, dir.lastIndexOf("/")));
      const inModules =
        parentName(up) === "node_modules" ||
        (parentName(up).startsWith("@") &&
          parentName(up.slice(0, Math.max(0, up.lastIndexOf("/")))) === "node_modules");
      if (!inModules) return [];
      const p = await npmPackage(abs, location);
      return p ? [p] : [];
    }
    if (
      (name === "METADATA" && parentName(dir).endsWith(".dist-info")) ||
      (name === "PKG-INFO" && parentName(dir).endsWith(".egg-info")) ||
      name.endsWith(".egg-info")
    ) {
      const p = await pythonPackage(abs, location);
      return p ? [p] : [];
    }
    return await goCandidate(abs, location);
  } catch {
    // an unreadable or odd file is no package; the scan goes on
    return [];
  }
}

async function goCandidate(abs: string, location: string): Promise<FoundPackage[]> {
  const st = await stat(abs);
  if ((st.mode & 0o111) === 0 || st.size < MIN_GO_BINARY) return [];
  return goPackages(abs, location);
}
