// @vitest-environment node
import { describe, expect, it } from "vitest";
import { ApiError, Code, createApiClient, parseErrorBody, unwrap } from "./client";

describe("parseErrorBody", () => {
  const cases: { name: string; status: number; body: unknown; want: { code: number; message: string; field?: string } }[] = [
    {
      name: "google.rpc.Status as text names the field",
      status: 400,
      body: '{"code":3,"message":"store.display_name: is required: give the store a name of 1 to 63 characters","details":[]}',
      want: {
        code: Code.InvalidArgument,
        message: "store.display_name: is required: give the store a name of 1 to 63 characters",
        field: "store.display_name",
      },
    },
    {
      name: "already parsed status without a field",
      status: 429,
      body: { code: 8, message: "quota of 2 stores reached: delete a store first", details: [] },
      want: { code: Code.ResourceExhausted, message: "quota of 2 stores reached: delete a store first" },
    },
    {
      name: "stream error wrapped in error",
      status: 200,
      body: { error: { code: 16, message: "token revoked" } },
      want: { code: Code.Unauthenticated, message: "token revoked" },
    },
    {
      name: "plain text from a proxy keeps its text and maps the status",
      status: 503,
      body: "upstream connect error",
      want: { code: Code.Unavailable, message: "upstream connect error" },
    },
    {
      name: "an HTML page is not a message",
      status: 502,
      body: "<html><body>Bad Gateway</body></html>",
      want: { code: Code.Internal, message: "The server answered 502" },
    },
    {
      name: "empty body on 401",
      status: 401,
      body: undefined,
      want: { code: Code.Unauthenticated, message: "The server answered 401" },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const err = parseErrorBody(c.status, c.body);
      expect(err).toBeInstanceOf(ApiError);
      expect({ code: err.code, message: err.message, field: err.field }).toEqual({ field: undefined, ...c.want });
      expect(err.status).toBe(c.status);
    });
  }
});

describe("createApiClient", () => {
  it("sends the bearer token and throws the server's error from unwrap", async () => {
    const seen: Request[] = [];
    const api = createApiClient({
      token: "s3cret",
      baseUrl: "http://gw",
      fetch: async (req) => {
        seen.push(req as Request);
        return new Response(
          JSON.stringify({ code: 3, message: "store.engine: is required: use ENGINE_WOOCOMMERCE or ENGINE_MEDUSA", details: [] }),
          { status: 400, headers: { "Content-Type": "application/json" } },
        );
      },
    });
    const res = await api.POST("/v1/stores", { body: { displayName: "Shop", engine: "ENGINE_UNSPECIFIED" } });
    expect(() => unwrap(res)).toThrowError(
      expect.objectContaining({ code: 3, field: "store.engine", message: "store.engine: is required: use ENGINE_WOOCOMMERCE or ENGINE_MEDUSA" }),
    );
    expect(seen[0]?.headers.get("Authorization")).toBe("Bearer s3cret");
    expect(seen[0]?.url).toBe("http://gw/v1/stores");
    expect(await seen[0]?.json()).toEqual({ displayName: "Shop", engine: "ENGINE_UNSPECIFIED" });
  });

  it("builds paths with ids and the :retry verb", async () => {
    const urls: string[] = [];
    const api = createApiClient({
      token: "t",
      baseUrl: "http://gw",
      fetch: async (req) => {
        urls.push(`${(req as Request).method} ${(req as Request).url}`);
        return new Response(JSON.stringify({ id: "abc" }), { status: 200, headers: { "Content-Type": "application/json" } });
      },
    });
    unwrap(await api.POST("/v1/stores/{id}:retry", { params: { path: { id: "abc" } }, body: {} }));
    unwrap(await api.GET("/v1/auditEntries", { params: { query: { storeId: "abc", pageSize: 100 } } }));
    expect(urls).toEqual(["POST http://gw/v1/stores/abc:retry", "GET http://gw/v1/auditEntries?storeId=abc&pageSize=100"]);
  });

  it("reports a 401 to onUnauthenticated", async () => {
    let told = 0;
    const api = createApiClient({
      token: "t",
      baseUrl: "http://gw",
      fetch: async () => new Response('{"code":16,"message":"no"}', { status: 401 }),
      onUnauthenticated: () => told++,
    });
    const err = await api.GET("/v1/users/me").then(unwrap, (e: unknown) => e).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).unauthenticated).toBe(true);
    expect(told).toBe(1);
  });
});
