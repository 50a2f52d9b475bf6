/**
 * Registry authentication: anonymous first; on 401, follow the challenge: Basic sends the
 * credentials, Bearer exchanges them (or nothing, for anonymous pulls) at the token realm for a
 * token cached per registry and scope set. Tokens are refreshed when they expire or a request
 * using one is refused. No secret ever goes into a message or an error's cause.
 */
import type { IncomingHttpHeaders } from "node:http";
import { KilnError } from "../errors.js";
import { parseChallenges, type Challenge } from "./challenge.js";
import type { Credentials, CredentialsProvider } from "./credentials.js";
import { readBody, type HttpTransport } from "./http.js";

interface Token {
  value: string;
  expiresAt: number;
}

interface HostState {
  challenge?: Challenge;
  tokens: Map<string, Promise<Token>>;
}

/** `repository:<name>:<actions>`, the scope a registry operation needs. */
export function repositoryScope(repository: string, actions: "pull" | "pull,push"): string {
  return `repository:${repository}:${actions}`;
}

export class Authorizer {
  private readonly hosts = new Map<string, HostState>();
  /** Counts token requests per realm: observable for tests and diagnostics. */
  tokenRequests = 0;

  constructor(
    private readonly transport: HttpTransport,
    private readonly credentials: CredentialsProvider | undefined,
  ) {}

  private state(registry: string): HostState {
    let s = this.hosts.get(registry);
    if (s === undefined) {
      s = { tokens: new Map() };
      this.hosts.set(registry, s);
    }
    return s;
  }

  /** The Authorization header for a request needing `scopes`, or undefined to go anonymous. */
  async authorization(registry: string, scopes: readonly string[]): Promise<string | undefined> {
    const s = this.state(registry);
    const c = s.challenge;
    if (c === undefined) return undefined;
    if (c.scheme === "basic") {
      const creds = await this.credentials?.(registry);
      if (creds === undefined || !("username" in creds)) return undefined;
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
    }
    const key = [...scopes].sort().join(" ");
    let pending = s.tokens.get(key);
    if (pending !== undefined) {
      const t = await pending.catch(() => undefined);
      if (t === undefined || t.expiresAt <= Date.now()) {
        s.tokens.delete(key);
        pending = undefined;
      }
    }
    if (pending === undefined) {
      pending = this.fetchToken(registry, c, scopes);
      s.tokens.set(key, pending);
      // A failed fetch must not stay cached.
      pending.catch(() => s.tokens.delete(key));
    }
    return `Bearer ${(await pending).value}`;
  }

  /**
   * Learn from a 401. Returns true when retrying with new authorization can help: a first
   * challenge, or a token that may be stale. `sent` is the Authorization header that was refused.
   */
  async unauthorized(
    registry: string,
    headers: IncomingHttpHeaders,
    scopes: readonly string[],
    sent: string | undefined,
  ): Promise<boolean> {
    const header = headers["www-authenticate"];
    const challenges = parseChallenges(Array.isArray(header) ? header.join(", ") : (header ?? ""));
    const chosen =
      challenges.find((c) => c.scheme === "bearer" && c.params.realm !== undefined) ??
      challenges.find((c) => c.scheme === "basic");
    if (chosen === undefined) return false;
    const s = this.state(registry);
    s.challenge = chosen;
    if (chosen.scheme === "basic") {
      // Retrying Basic helps only if we did not already send the same credentials.
      const creds = await this.credentials?.(registry);
      return sent === undefined && creds !== undefined && "username" in creds;
    }
    // Drop the cached token only if it is the one refused: parallel requests that went out
    // anonymously before the challenge was known must not throw away a fresh token.
    const key = [...scopes].sort().join(" ");
    const cached = s.tokens.get(key);
    if (cached !== undefined && sent !== undefined) {
      const t = await cached.catch(() => undefined);
      if (t === undefined || sent === `Bearer ${t.value}`) s.tokens.delete(key);
    }
    return true;
  }

  /** Whether credentials exist for a registry (to word errors; the secret is not exposed). */
  async hasCredentials(registry: string): Promise<boolean> {
    return (await this.credentials?.(registry)) !== undefined;
  }

  private async fetchToken(
    registry: string,
    c: Challenge,
    scopes: readonly string[],
  ): Promise<Token> {
    const creds = await this.credentials?.(registry);
    if (creds !== undefined && "registryToken" in creds) {
      return { value: creds.registryToken, expiresAt: Number.POSITIVE_INFINITY };
    }
    let realm: URL;
    try {
      realm = new URL(c.params.realm ?? "");
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("scheme");
    } catch {
      throw new KilnError("E_REGISTRY_AUTH", `${registry} sent an unusable token realm`, {
        hint: "the registry's auth configuration is broken; contact its operator",
      });
    }
    // Only this request's scopes: the remembered challenge's own scope may name another
    // repository (it came from whichever request met the 401).
    this.tokenRequests++;
    const res = await this.requestToken(realm, c, scopes, creds).catch((e: unknown) => {
      throw new KilnError(
        "E_REGISTRY_UNREACHABLE",
        `cannot reach the token server of ${registry} at ${realm.host}`,
        {
          hint: "check network access to the registry's auth service",
          cause: e,
        },
      );
    });
    const body = await readBody(res, 1 << 20).catch(() => Buffer.alloc(0));
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      throw new KilnError(
        "E_REGISTRY_AUTH",
        creds === undefined
          ? `${registry} requires authentication (token server at ${realm.host} refused anonymous access)`
          : `${registry} rejected the credentials (token server at ${realm.host} answered ${status})`,
        { hint: `log in with the right credentials: docker login ${registry}` },
      );
    }
    if (status !== 200) {
      throw new KilnError(
        "E_REGISTRY_AUTH",
        `token server of ${registry} at ${realm.host} answered ${status}`,
        {
          hint: "retry later; if it persists the registry's auth service is failing",
        },
      );
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
    } catch {
      parsed = {};
    }
    const value = typeof parsed.token === "string" ? parsed.token : parsed.access_token;
    if (typeof value !== "string" || value === "") {
      throw new KilnError(
        "E_REGISTRY_AUTH",
        `token server of ${registry} at ${realm.host} returned no token`,
        {
          hint: "the registry's auth service is misbehaving; contact its operator",
        },
      );
    }
    const lifetime =
      typeof parsed.expires_in === "number" && parsed.expires_in > 0 ? parsed.expires_in : 60;
    // Renew a little early so a token does not expire in flight.
    return { value, expiresAt: Date.now() + lifetime * 900 };
  }

  private requestToken(
    realm: URL,
    c: Challenge,
    scopes: readonly string[],
    creds: Credentials | undefined,
  ) {
    const service = c.params.service;
    if (creds !== undefined && "identityToken" in creds) {
      // OAuth2 refresh-token grant (what `docker login` leaves for identity-token registries).
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: creds.identityToken,
        client_id: "kiln",
      });
      if (service !== undefined) form.set("service", service);
      if (scopes.length > 0) form.set("scope", scopes.join(" "));
      return this.transport.request({
        method: "POST",
        url: realm,
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: Buffer.from(form.toString()),
      });
    }
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set("service", service);
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    if (creds !== undefined && "username" in creds) {
      url.searchParams.set("account", creds.username);
      headers.Authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
    }
    return this.transport.request({ method: "GET", url, headers });
  }
}
