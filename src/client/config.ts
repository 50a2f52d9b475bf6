/** Builders and their nodes, kept in `builders.json` under the user's kiln config directory. */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { KilnError, messageOf } from "../errors.js";

export interface NodeTls {
  ca: string;
  cert: string;
  key: string;
}

export interface BuilderNode {
  name: string;
  /** unix:///path.sock or tcp://host:port */
  endpoint: string;
  /** platforms configured for this node (routing prefers them), formatted */
  platforms: string[];
  tls?: NodeTls;
}

export interface Builder {
  name: string;
  nodes: BuilderNode[];
}

export interface BuildersFile {
  /** the builder `kiln build` uses without --builder; absent: the embedded engine */
  current?: string;
  builders: Builder[];
}

/** `$KILN_CONFIG/builders.json`, else `$XDG_CONFIG_HOME/kiln/builders.json`. */
export function buildersPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.KILN_CONFIG ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "kiln");
  return join(dir, "builders.json");
}

export async function loadBuilders(path = buildersPath()): Promise<BuildersFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { builders: [] };
    throw new KilnError("E_CONFIG", `cannot read ${path}: ${messageOf(e)}`);
  }
  try {
    const f = JSON.parse(text) as BuildersFile;
    if (!Array.isArray(f.builders)) throw new Error("no builders list");
    return f;
  } catch (e) {
    throw new KilnError("E_CONFIG", `${path} is not a builders file: ${messageOf(e)}`, {
      hint: `fix or remove ${path}, then create builders again with kiln builder create`,
    });
  }
}

export async function saveBuilders(f: BuildersFile, path = buildersPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(f, null, 2) + "\n", { mode: 0o600 });
  await rename(tmp, path);
}

export function findBuilder(f: BuildersFile, name: string): Builder {
  const b = f.builders.find((x) => x.name === name);
  if (!b) {
    throw new KilnError("E_NO_BUILDER", `no builder named ${JSON.stringify(name)}`, {
      hint: f.builders.length
        ? `known builders: ${f.builders.map((x) => x.name).join(", ")}`
        : "create one with kiln builder create --name NAME ENDPOINT",
    });
  }
  return b;
}

/**
 * The builder a build uses: the one named (`--builder`), else the one selected with `use`,
 * else none (the embedded engine). `default` names the embedded engine explicitly.
 */
export async function selectBuilder(name: string | undefined): Promise<Builder | undefined> {
  const f = await loadBuilders();
  const chosen = name ?? f.current;
  if (chosen === undefined || chosen === "default") return undefined;
  return findBuilder(f, chosen);
}
