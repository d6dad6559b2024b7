// @vitest-environment node
import { describe, expect, it } from "vitest";
import { fetchAuthConfig, parseAuthConfig, tokenOnly, type AuthConfig } from "./authConfig";

describe("parseAuthConfig", () => {
  const origin = "https://gateway.test";
  const cases: { name: string; body: unknown; want: AuthConfig }[] = [
    {
      name: "enabled: the login URL is resolved against the gateway",
      body: { oidc: { enabled: true, providerName: "Development IdP", loginUrl: "/auth/login" } },
      want: { oidc: { enabled: true, providerName: "Development IdP", loginUrl: "https://gateway.test/auth/login" } },
    },
    { name: "disabled", body: { oidc: { enabled: false } }, want: tokenOnly },
    { name: "enabled without a provider name", body: { oidc: { enabled: true, loginUrl: "/auth/login" } }, want: tokenOnly },
    { name: "enabled without a login URL", body: { oidc: { enabled: true, providerName: "IdP" } }, want: tokenOnly },
    {
      name: "a login URL that is no web page",
      body: { oidc: { enabled: true, providerName: "IdP", loginUrl: "javascript:alert(1)" } },
      want: tokenOnly,
    },
    { name: "enabled as a string is not enabled", body: { oidc: { enabled: "true", providerName: "IdP", loginUrl: "/l" } }, want: tokenOnly },
    { name: "no oidc", body: {}, want: tokenOnly },
    { name: "not an object", body: "<html>", want: tokenOnly },
    { name: "null", body: null, want: tokenOnly },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(parseAuthConfig(c.body, origin)).toEqual(c.want);
    });
  }
});

describe("fetchAuthConfig", () => {
  const answering = (res: () => Promise<Response>) => (async () => res()) as typeof fetch;

  it("asks GET /auth/config of the gateway, without a token", async () => {
    const seen: Request[] = [];
    const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      seen.push(new Request(input, init));
      return Response.json({ oidc: { enabled: true, providerName: "IdP", loginUrl: "/auth/login" } });
    }) as typeof globalThis.fetch;
    const got = await fetchAuthConfig({ baseUrl: "http://gateway.test", fetch });
    expect(got).toEqual({ oidc: { enabled: true, providerName: "IdP", loginUrl: "http://gateway.test/auth/login" } });
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual(["GET http://gateway.test/auth/config"]);
    expect(seen[0]?.headers.get("Authorization")).toBeNull();
  });

  const failures: { name: string; fetch: typeof fetch }[] = [
    { name: "an unreachable gateway", fetch: answering(() => Promise.reject(new TypeError("Failed to fetch"))) },
    { name: "a 404 of a gateway without the endpoint", fetch: answering(async () => new Response("404 page not found", { status: 404 })) },
    { name: "a body that is not JSON", fetch: answering(async () => new Response("<html></html>", { status: 200 })) },
  ];
  for (const c of failures) {
    it(`means API tokens only after ${c.name}`, async () => {
      expect(await fetchAuthConfig({ baseUrl: "http://gateway.test", fetch: c.fetch })).toEqual(tokenOnly);
    });
  }
});
