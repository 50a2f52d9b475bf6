/**
 * Registry credentials from Docker's config (`$DOCKER_CONFIG/config.json`, else
 * `~/.docker/config.json`): `auths` entries (base64 `auth`, `identitytoken`, `registrytoken`),
 * `credHelpers[host]` and `credsStore` via `docker-credential-<name> get`.
 * Secrets never appear in messages: errors name the host and the helper only.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { KilnError, isKilnError, messageOf } from "../errors.js";
import { run, type RunResult } from "../process/index.js";

export type Credentials =
  | { username: string; password: string }
  /** An OAuth2 refresh token (`identitytoken`), exchanged at the token realm. */
  | { identityToken: string }
  /** A bearer token sent to the registry as is (`registrytoken`). */
  | { registryToken: string };

/** Credentials for a registry host (as in an image reference: "docker.io", "host:5000"). */
export type CredentialsProvider = (registry: string) => Promise<Credentials | undefined>;

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

export interface DockerConfig {
  auths: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers: Record<string, string>;
}

const dockerHubKey = "https://index.docker.io/v1/";
const dockerHubNames = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/** The key Docker uses for a registry: Docker Hub's legacy URL, else the bare host[:port]. */
export function credentialKey(registry: string): string {
  return dockerHubNames.has(registry) ? dockerHubKey : registry;
}

/** `https://host:5000/v1/` → `host:5000`, the way Docker normalises `auths` keys. */
function hostOfKey(key: string): string {
  if (key === dockerHubKey) return key;
  const host = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split("/")[0]!;
  return dockerHubNames.has(host) ? dockerHubKey : host;
}

/** Parse a config.json text; malformed files are an error naming the file (never its content). */
export function parseDockerConfig(text: string, file = "config.json"): DockerConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KilnError("E_DOCKER_CONFIG", `${file} is not valid JSON`, {
      hint: "fix or remove the file (docker login rewrites it)",
    });
  }
  const o = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const auths: Record<string, AuthEntry> = {};
  if (typeof o.auths === "object" && o.auths !== null) {
    for (const [k, v] of Object.entries(o.auths as Record<string, unknown>)) {
      if (typeof v === "object" && v !== null) auths[hostOfKey(k)] = v;
    }
  }
  const credHelpers: Record<string, string> = {};
  if (typeof o.credHelpers === "object" && o.credHelpers !== null) {
    for (const [k, v] of Object.entries(o.credHelpers as Record<string, unknown>)) {
      if (typeof v === "string") credHelpers[hostOfKey(k)] = v;
    }
  }
  const config: DockerConfig = { auths, credHelpers };
  if (typeof o.credsStore === "string" && o.credsStore !== "") config.credsStore = o.credsStore;
  return config;
}

/** What the config file itself says about a registry (no helpers run). */
export function credentialsFromEntry(
  entry: AuthEntry | undefined,
  registry: string,
): Credentials | undefined {
  if (entry === undefined) return undefined;
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.registrytoken) return { registryToken: entry.registrytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new KilnError(
        "E_DOCKER_CONFIG",
        `the saved credentials for ${registry} are malformed`,
        {
          hint: `log in again: docker login ${registry}`,
        },
      );
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

export interface DockerCredentialsOptions {
  /** Directory holding config.json; default $DOCKER_CONFIG, else ~/.docker. */
  configDir?: string;
  /** Environment for finding the config and running helpers (PATH); default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** A provider that reads Docker's config on each call (it is small; logins may change it). */
export function dockerCredentials(opts: DockerCredentialsOptions = {}): CredentialsProvider {
  const env = opts.env ?? process.env;
  const dir = opts.configDir ?? env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), ".docker");
  const file = join(dir, "config.json");
  return async (registry) => {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      return undefined;
    }
    const config = parseDockerConfig(text, file);
    const key = credentialKey(registry);
    const helper = config.credHelpers[key] ?? config.credsStore;
    if (helper !== undefined) {
      const fromHelper = await runCredentialHelper(helper, key, env);
      if (fromHelper !== undefined) return fromHelper;
    }
    return credentialsFromEntry(config.auths[key], registry);
  };
}

/** `docker-credential-<name> get`, server URL on stdin, JSON {Username, Secret} on stdout. */
export async function runCredentialHelper(
  name: string,
  serverURL: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const program = `docker-credential-${name}`;
  // Only the first line of the cause: helpers' output may hold secrets.
  const failed = (why: string, cause: unknown) =>
    new KilnError("E_CREDENTIAL_HELPER", `credential helper ${program} ${why} for ${serverURL}`, {
      hint: `check the helper (try: echo ${serverURL} | ${program} get), or remove it from the Docker config`,
      cause: new Error(messageOf(cause).split("\n")[0]),
    });
  let result: RunResult;
  try {
    result = await run(program, ["get"], {
      env,
      input: serverURL,
      timeoutMs: 30_000,
      maxStdoutBytes: 1 << 20,
    });
  } catch (e) {
    const missing =
      isKilnError(e) &&
      e.code === "E_PROCESS_SPAWN" &&
      (e.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
    throw failed(missing ? "is not installed" : "failed", e);
  }
  const stdout = result.stdout.toString("utf8");
  if (result.exitCode !== 0) {
    // Helpers report a missing entry on stdout with a failing exit status.
    if (/credentials not found/i.test(stdout)) return undefined;
    throw failed("failed", `${program} get exited with status ${result.exitCode}`);
  }
  try {
    const parsed = JSON.parse(stdout) as { Username?: unknown; Secret?: unknown };
    if (typeof parsed.Secret !== "string" || typeof parsed.Username !== "string")
      throw new Error("shape");
    return parsed.Username === "<token>"
      ? { identityToken: parsed.Secret }
      : { username: parsed.Username, password: parsed.Secret };
  } catch {
    throw new KilnError(
      "E_CREDENTIAL_HELPER",
      `credential helper ${program} returned malformed output for ${serverURL}`,
      { hint: `check the helper: echo ${serverURL} | ${program} get` },
    );
  }
}
