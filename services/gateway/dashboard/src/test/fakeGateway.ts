// A fake of the gateway's REST API behind a fetch function, for component
// tests: it keeps stores and audit entries in memory, checks the bearer
// token, answers errors as grpc-gateway does, and streams the watch as NDJSON.
// It accepts an API token and a session token (what a sign-in with the
// identity provider hands over), answers GET /auth/config as the gateway
// does, and revokes the session token on POST /v1/users/me:signOut.
import type { AuditEntry, Store, Token, User } from "../api/client";

/** A store as the API would return it, with defaults for what a test leaves out. */
export function store(s: Partial<Store> & { id: string }): Store {
  return {
    displayName: `Store ${s.id}`,
    engine: "ENGINE_WOOCOMMERCE",
    owner: "alice",
    phase: "PHASE_PROVISIONING",
    failureReason: "",
    failureMessage: "",
    url: "",
    createTime: "2026-01-02T10:00:00Z",
    updateTime: "2026-01-02T10:00:00Z",
    generation: "1",
    observedGeneration: "0",
    namespace: `store-${s.id}`,
    chartVersion: "",
    ...s,
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function rpcError(status: number, code: number, message: string): Response {
  return json(status, { code, message, details: [] });
}

/** Options of fakeGateway. */
export interface FakeGatewayOptions {
  /** The API token it accepts. */
  token?: string;
  /** The session token it accepts, until signed out with it. */
  sessionToken?: string;
  user?: User;
  stores?: Store[];
  audit?: AuditEntry[];
  /** The identity provider GET /auth/config offers; none when left out. */
  oidc?: { providerName: string; loginUrl: string };
  /** The tokens GET /v1/tokens lists; the first is the API token's. */
  tokens?: Token[];
}

/** fakeGateway returns an in-memory API and its fetch. */
export function fakeGateway(opts: FakeGatewayOptions = {}) {
  const token = opts.token ?? "good-token";
  const sessionToken = opts.sessionToken ?? "sp_session-token";
  const accepted = new Set([token, sessionToken]);
  const user: User = opts.user ?? { name: "alice", admin: false, storeQuota: 5, createTime: "2026-01-01T00:00:00Z" };
  const stores = new Map((opts.stores ?? []).map((s) => [s.id as string, s]));
  const audit = [...(opts.audit ?? [])];
  const requests: { method: string; path: string; search: URLSearchParams; body: unknown; authorization: string | null }[] = [];
  const watchers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const encoder = new TextEncoder();
  let nextId = 1;
  const tokens: Token[] = [...(opts.tokens ?? [])];
  // Which bearer each listed token is, so that revoking one refuses it.
  const secrets = new Map<string, string>();
  if (tokens[0]?.id) secrets.set(tokens[0].id, token);
  let clock = Date.parse("2026-01-02T12:00:00Z");
  const now = () => new Date((clock += 1000)).toISOString();

  function emit(s: Store) {
    const line = encoder.encode(JSON.stringify({ result: { store: s } }) + "\n");
    for (const c of watchers) c.enqueue(line);
  }

  function save(s: Store): Store {
    stores.set(s.id as string, s);
    emit(s);
    return s;
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = decodeURIComponent(url.pathname);
    const text = req.method === "GET" || req.method === "DELETE" ? "" : await req.text();
    const body = text ? JSON.parse(text) : undefined;
    const authorization = req.headers.get("Authorization");
    requests.push({ method: req.method, path, search: url.searchParams, body, authorization });
    // The gateway serves /auth/config itself, to anyone.
    if (req.method === "GET" && path === "/auth/config") {
      return json(200, { oidc: opts.oidc ? { enabled: true, ...opts.oidc } : { enabled: false } });
    }
    const bearer = authorization?.replace(/^Bearer /, "") ?? "";
    if (!accepted.has(bearer)) {
      return rpcError(401, 16, "the API token is not valid: create a new one with storectl token create");
    }
    const byId = /^\/v1\/stores\/([^/:]+)(:retry|:upgrade)?$/.exec(path);
    if (req.method === "GET" && path === "/v1/users/me") return json(200, user);
    if (req.method === "POST" && path === "/v1/users/me:signOut") {
      const revoked = bearer === sessionToken;
      if (revoked) accepted.delete(bearer);
      return json(200, { revoked });
    }
    if (req.method === "GET" && path === "/v1/tokens") {
      const of = url.searchParams.get("user") || user.name;
      if (of !== user.name && !user.admin) return rpcError(403, 7, "permission denied: only an admin may list another user's tokens");
      return json(200, { tokens: tokens.filter((t) => t.user === of) });
    }
    if (req.method === "POST" && path === "/v1/tokens") {
      const t: Token = {
        id: String(100 + nextId++),
        user: body?.user || user.name,
        description: body?.description ?? "",
        kind: "TOKEN_KIND_API",
        createTime: now(),
        expireTime: "2026-04-02T12:00:00Z",
      };
      tokens.unshift(t);
      const secret = `sp_new-${t.id}`;
      secrets.set(t.id as string, secret);
      accepted.add(secret);
      return json(200, { token: secret, info: t, user: { ...user, name: t.user }, userCreated: false });
    }
    const tokenId = /^\/v1\/tokens\/([^/]+)$/.exec(path);
    if (req.method === "DELETE" && tokenId) {
      const i = tokens.findIndex((t) => t.id === tokenId[1] && (user.admin || t.user === user.name));
      if (i < 0) return rpcError(404, 5, `token not found: ${tokenId[1]}`);
      const [t] = tokens.splice(i, 1);
      accepted.delete(secrets.get(tokenId[1] as string) ?? "");
      return json(200, t);
    }
    if (req.method === "GET" && path === "/v1/stores") {
      return json(200, { stores: [...stores.values()].reverse(), nextPageToken: "" });
    }
    if (req.method === "POST" && path === "/v1/stores") {
      const name = String(body?.displayName ?? "").trim();
      if (!name) return rpcError(400, 3, "store.display_name: is required: give the store a name of 1 to 63 characters");
      const t = now();
      const id = `new${nextId++}`;
      return json(200, save(store({ id, displayName: name, engine: body.engine, owner: user.name, createTime: t, updateTime: t })));
    }
    if (req.method === "GET" && path === "/v1/stores:watch") {
      let self: ReadableStreamDefaultController<Uint8Array>;
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          self = c;
          watchers.add(c);
          for (const s of stores.values()) c.enqueue(encoder.encode(JSON.stringify({ result: { store: s } }) + "\n"));
          c.enqueue(encoder.encode(JSON.stringify({ result: { snapshotComplete: true } }) + "\n"));
        },
        cancel() {
          watchers.delete(self);
        },
      });
      req.signal.addEventListener("abort", () => {
        watchers.delete(self);
        try {
          self.close();
        } catch {
          // already closed by the reader
        }
      });
      return new Response(stream, { status: 200, headers: { "Content-Type": "application/json" } });
    }
    if (req.method === "GET" && path === "/v1/auditEntries") {
      const q = url.searchParams;
      const match = audit.filter(
        (e) =>
          (!q.get("storeId") || e.storeId === q.get("storeId")) &&
          (!q.get("actor") || e.actor === q.get("actor")) &&
          (!q.get("action") || e.action === q.get("action")),
      );
      return json(200, { entries: match, nextPageToken: "" });
    }
    if (byId) {
      const id = byId[1] as string;
      const s = stores.get(id);
      if (!s) return rpcError(404, 5, `store ${id} not found`);
      if (req.method === "GET" && !byId[2]) return json(200, s);
      if (req.method === "DELETE" && !byId[2]) {
        return json(200, save({ ...s, phase: "PHASE_DELETING", updateTime: now(), generation: String(Number(s.generation) + 1) }));
      }
      if (req.method === "POST" && byId[2] === ":upgrade") {
        if (s.phase !== "PHASE_READY") return rpcError(400, 9, `store ${id} is not READY: only a READY store can be upgraded`);
        const version = String(body?.chartVersion ?? "");
        if (version && !/^\d+\.\d+\.\d+$/.test(version)) {
          return rpcError(400, 3, `chart_version: "${version}" is not a version: use a semantic version such as 0.3.0, or leave it empty`);
        }
        return json(200, save({ ...s, phase: "PHASE_PROVISIONING", updateTime: now(), generation: String(Number(s.generation) + 1) }));
      }
      if (req.method === "POST" && byId[2] === ":retry") {
        if (s.phase !== "PHASE_FAILED") return rpcError(400, 9, `store ${id} is not FAILED`);
        return json(
          200,
          save({ ...s, phase: "PHASE_PROVISIONING", failureReason: "", failureMessage: "", updateTime: now(), generation: String(Number(s.generation) + 1) }),
        );
      }
    }
    return rpcError(404, 5, `no route for ${req.method} ${path}`);
  }

  return {
    token,
    sessionToken,
    requests,
    stores,
    /** fetch answers like the gateway. */
    fetch: ((input: RequestInfo | URL, init?: RequestInit) =>
      handle(input instanceof Request ? input : new Request(input, init))) as typeof globalThis.fetch,
    /** update changes a store as the platform would, and tells the watchers. */
    update(id: string, change: Partial<Store>) {
      const s = stores.get(id);
      if (!s) throw new Error(`no store ${id}`);
      return save({ ...s, ...change, updateTime: now() });
    },
    /** record adds an entry to the audit log, as the audit service would. */
    record(entry: AuditEntry) {
      audit.push(entry);
    },
    /** revoke stops accepting any token (as when one expires) and ends the open watch streams. */
    revoke() {
      accepted.clear();
      for (const c of watchers) c.error(new TypeError("network error"));
      watchers.clear();
    },
    /** accepts tells whether the API still takes bearer. */
    accepts(bearer: string) {
      return accepted.has(bearer);
    },
    /** signOuts are the calls of POST /v1/users/me:signOut so far. */
    get signOuts() {
      return requests.filter((r) => r.method === "POST" && r.path === "/v1/users/me:signOut");
    },
    /** watching is how many watch streams are open. */
    get watching() {
      return watchers.size;
    },
  };
}
