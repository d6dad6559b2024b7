// GET /auth/config: which ways of signing in the gateway offers. The gateway
// serves it itself, outside the OpenAPI document (it is no gRPC method), so
// its type is written here by hand, with only what the dashboard reads.

/** Sign-in with OpenID Connect, as GET /auth/config describes it. */
export type OidcConfig =
  | { enabled: false }
  | {
      enabled: true;
      /** Name of the identity provider, for "Sign in with <providerName>". */
      providerName: string;
      /**
       * Absolute URL the browser loads to sign in: the gateway sends it on to
       * the identity provider, which sends it back to the gateway's /auth/callback.
       */
      loginUrl: string;
    };

/** The answer of GET /auth/config. */
export interface AuthConfig {
  oidc: OidcConfig;
}

/** What fetchAuthConfig returns when the gateway does not offer OIDC, or cannot say: API tokens only. */
export const tokenOnly: AuthConfig = { oidc: { enabled: false } };

/** Options of fetchAuthConfig. */
export interface AuthConfigOptions {
  /** Origin of the gateway; "" (the default) means this page's origin. */
  baseUrl?: string;
  /** fetch to use; tests pass a fake. */
  fetch?: typeof globalThis.fetch;
}

/**
 * fetchAuthConfig asks the gateway which ways of signing in it offers. It never
 * throws and logs nothing: an unreachable gateway, an error status or a body of
 * another shape all mean tokenOnly, so that the API-token form still works.
 * loginUrl comes back absolute, resolved against the gateway's origin.
 */
export async function fetchAuthConfig(opts: AuthConfigOptions = {}): Promise<AuthConfig> {
  const origin = opts.baseUrl || (typeof window === "undefined" ? "" : window.location.origin);
  try {
    const res = await (opts.fetch ?? globalThis.fetch)(`${origin}/auth/config`, { headers: { Accept: "application/json" } });
    if (!res.ok) return tokenOnly;
    return parseAuthConfig(await res.json(), origin);
  } catch {
    return tokenOnly;
  }
}

/**
 * parseAuthConfig reads the body of GET /auth/config, resolving loginUrl
 * against origin. Anything but an enabled OIDC with a provider name and an
 * http(s) login URL is tokenOnly.
 */
export function parseAuthConfig(body: unknown, origin: string): AuthConfig {
  const oidc: unknown = body && typeof body === "object" ? (body as { oidc?: unknown }).oidc : undefined;
  if (!oidc || typeof oidc !== "object") return tokenOnly;
  const { enabled, providerName, loginUrl } = oidc as Record<string, unknown>;
  if (enabled !== true || typeof providerName !== "string" || !providerName.trim() || typeof loginUrl !== "string" || !loginUrl) {
    return tokenOnly;
  }
  let url: URL;
  try {
    url = new URL(loginUrl, `${origin}/`);
  } catch {
    return tokenOnly;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return tokenOnly;
  return { oidc: { enabled: true, providerName: providerName.trim(), loginUrl: url.href } };
}
