// The dashboard's REST client: openapi-fetch over the types generated from the
// gateway's OpenAPI document (schema.ts). Every request carries the bearer
// token; every failure becomes an ApiError.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

/** Store as the API returns it. */
export type Store = components["schemas"]["v1Store"];
/** Phase of a store's lifecycle. */
export type Phase = components["schemas"]["v1Phase"];
/** Ecommerce software a store runs. */
export type Engine = components["schemas"]["v1Engine"];
/** One recorded action of the audit log. */
export type AuditEntry = components["schemas"]["v1AuditEntry"];
/** The signed-in user. */
export type User = components["schemas"]["v1User"];
/** A bearer token, without its secret. */
export type Token = components["schemas"]["v1Token"];
/** The answer to creating a token: the secret, shown once, and whose it is. */
export type CreatedToken = components["schemas"]["v1CreateTokenResponse"];
/** Error body of every failed call: a google.rpc.Status. */
export type RpcStatus = components["schemas"]["rpcStatus"];
/** Query parameters of GET /v1/auditEntries. */
export type AuditQuery = NonNullable<paths["/v1/auditEntries"]["get"]["parameters"]["query"]>;

/** The generated, typed client. */
export type ApiClient = Client<paths>;

/** gRPC status codes, as the gateway puts them in error bodies. */
export const Code = {
  OK: 0,
  Cancelled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;

// grpc-gateway's HTTPStatusFromCode, inverted for bodies that carry no code
// (a proxy's HTML error page, an empty 502).
function codeFromHTTPStatus(status: number): number {
  switch (status) {
    case 400:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 409:
      return Code.Aborted;
    case 412:
      return Code.FailedPrecondition;
    case 429:
      return Code.ResourceExhausted;
    case 501:
      return Code.Unimplemented;
    case 503:
      return Code.Unavailable;
    case 504:
      return Code.DeadlineExceeded;
    default:
      return status >= 500 ? Code.Internal : Code.Unknown;
  }
}

/**
 * ApiError is a failed API call. message is the server's message, meant for
 * people; field names the request field it is about ("store.display_name"),
 * when the message starts with one.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: number;
  readonly details: unknown[];
  readonly field: string | undefined;

  constructor(status: number, code: number, message: string, details: unknown[] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.field = /^([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*): /.exec(message)?.[1];
  }

  /** True when the token is missing, wrong or revoked: the user must sign in again. */
  get unauthenticated(): boolean {
    return this.code === Code.Unauthenticated || this.status === 401;
  }
}

/**
 * parseErrorBody turns a failed response's status and body (text, or JSON
 * that openapi-fetch already parsed) into an ApiError. It never throws: a
 * body that is not a google.rpc.Status still yields a readable message.
 */
export function parseErrorBody(status: number, body: unknown, statusText = ""): ApiError {
  let parsed: unknown = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const fallback = () => {
    const text = typeof body === "string" ? body.trim() : "";
    // A short plain-text body is a message; an HTML page is not.
    if (text && text.length <= 300 && !text.startsWith("<")) return text;
    return `The server answered ${status}${statusText ? ` ${statusText}` : ""}`;
  };
  if (parsed && typeof parsed === "object") {
    const rpc = parsed as RpcStatus & { error?: RpcStatus };
    // Stream errors arrive wrapped: {"error": {...}}.
    const s = rpc.error && typeof rpc.error === "object" ? rpc.error : rpc;
    const code = typeof s.code === "number" ? s.code : codeFromHTTPStatus(status);
    const message = typeof s.message === "string" && s.message ? s.message : fallback();
    return new ApiError(status, code, message, Array.isArray(s.details) ? s.details : []);
  }
  return new ApiError(status, codeFromHTTPStatus(status), fallback());
}

/** Options of createApiClient. */
export interface ClientOptions {
  /** Bearer token sent with every request. */
  token: string;
  /** Origin and prefix of the API; "" (the default) means this page's origin. */
  baseUrl?: string;
  /** fetch to use; tests pass a fake. */
  fetch?: typeof globalThis.fetch;
  /** Called when a response says the token is not (or no longer) valid. */
  onUnauthenticated?: () => void;
}

/** createApiClient returns a typed client that authenticates with token. */
export function createApiClient(opts: ClientOptions): ApiClient {
  const client = createClient<paths>({
    baseUrl: opts.baseUrl ?? (typeof window === "undefined" ? "" : window.location.origin),
    // Look fetch up at call time, so that test doubles installed later apply.
    fetch: (req) => (opts.fetch ?? globalThis.fetch)(req),
  });
  const auth: Middleware = {
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${opts.token}`);
      return request;
    },
    onResponse({ response }) {
      if (response.status === 401) opts.onUnauthenticated?.();
      return undefined;
    },
  };
  client.use(auth);
  return client;
}

/**
 * unwrap returns a call's data, or throws its ApiError. Use it in query and
 * mutation functions: `unwrap(await api.GET("/v1/stores"))`.
 */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    throw parseErrorBody(result.response.status, result.error, result.response.statusText);
  }
  return result.data as T;
}
