// The signed-in session: a token checked with GET /v1/users/me, kept in
// sessionStorage (gone when the tab closes), and the typed client that sends
// it. The token is an API token pasted in, or a session token the gateway
// hands over after a sign-in with the identity provider (OIDC).
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { fetchAuthConfig, type AuthConfig } from "../api/authConfig";
import { ApiError, createApiClient, unwrap, type ApiClient, type User } from "../api/client";
import { finishArrival, readArrival, rememberRoute } from "./oidcRedirect";

/** sessionStorage key of the token. */
export const tokenStorageKey = "storeprov.token";

/** A signed-in user and the client that calls the API as them. */
export interface Session {
  token: string;
  user: User;
  api: ApiClient;
  /**
   * expire ends this session because the API refused its token (a 401: it
   * expired or was revoked): it forgets the token without asking the API to
   * revoke it, and the sign-in page says why. Once this session has ended or
   * is signing out, it does nothing.
   */
  expire: () => void;
}

interface SessionContextValue {
  session: Session | null;
  /** True while a token (kept in sessionStorage, or just handed over by the gateway) is being checked. */
  restoring: boolean;
  /** Why the last session ended, when it did not end by signing out. */
  notice: string | null;
  /** Why the last sign-in with the identity provider failed, as the gateway said; cleared by the next sign-in. */
  signInError: string | null;
  /** signIn checks token and starts a session; it throws the ApiError that rejected it. */
  signIn: (token: string) => Promise<void>;
  /**
   * signOut ends the session at the user's request: it asks the API to revoke
   * the token (POST /v1/users/me:signOut, which revokes a session token and
   * leaves an API token valid), then forgets the token and every cached answer,
   * whatever the API answered.
   */
  signOut: () => Promise<void>;
  /** loadAuthConfig asks the gateway which ways of signing in it offers; it never throws. */
  loadAuthConfig: () => Promise<AuthConfig>;
  /**
   * signInWithProvider remembers the current route and loads loginUrl, the
   * gateway's sign-in with the identity provider; the gateway brings the
   * browser back to /#session=… or /#signin_error=….
   */
  signInWithProvider: (loginUrl: string) => void;
}

const SessionContext = createContext<SessionContextValue | null>(null);

/** Props of SessionProvider. */
export interface SessionProviderProps {
  children: ReactNode;
  /** Origin of the API; defaults to the page's. */
  baseUrl?: string;
  fetch?: typeof globalThis.fetch;
  /** loadPage replaces this page with url; defaults to window.location.assign. Tests pass a spy, since jsdom loads no pages. */
  loadPage?: (url: string) => void;
}

/** What the sign-in page says when the API stops accepting the token of a session. */
const expiredNotice = "Your session ended: its token is no longer accepted (it expired or was revoked). Sign in again to continue.";

/** How long signing out waits for the API to revoke the token before forgetting it anyway. */
const revokeTimeoutMs = 5_000;

/** SessionProvider holds the session for everything below it. */
export function SessionProvider({ children, baseUrl, fetch, loadPage }: SessionProviderProps) {
  const queryClient = useQueryClient();
  // A sign-in with the identity provider that just came back, read before routing.
  const [arrival] = useState(() => readArrival(window.location));
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [signInError, setSignInError] = useState<string | null>(() => arrival?.error ?? null);
  const [restoring, setRestoring] = useState(() => Boolean(arrival ? arrival.token : readToken()));
  const generation = useRef(0);

  const forget = useCallback(
    (why: string | null) => {
      generation.current++;
      sessionStorage.removeItem(tokenStorageKey);
      queryClient.clear();
      setSession(null);
      setNotice(why);
    },
    [queryClient],
  );

  const signOut = useCallback(async () => {
    const ending = session;
    // From here on the session's own 401s are stale: they must not turn this
    // sign-out into an expiry, and a revoked token is what was asked for.
    const mine = ++generation.current;
    if (ending) await revoke(ending.api);
    if (generation.current === mine) forget(null);
  }, [session, forget]);

  const start = useCallback(
    async (raw: string) => {
      const token = raw.trim();
      const mine = ++generation.current;
      let started = false;
      // Only a started, current session may end itself: a token rejected while
      // signing in is the sign-in's error, and a late 401 of an old session is stale.
      const expire = () => {
        if (started && generation.current === mine) forget(expiredNotice);
      };
      const api = createApiClient({
        token,
        ...(baseUrl !== undefined && { baseUrl }),
        ...(fetch && { fetch }),
        onUnauthenticated: expire,
      });
      const user = unwrap(await api.GET("/v1/users/me"));
      if (generation.current !== mine) return;
      started = true;
      sessionStorage.setItem(tokenStorageKey, token);
      setNotice(null);
      setSignInError(null);
      setSession({ token, user, api, expire });
    },
    [baseUrl, fetch, forget],
  );

  const signIn = useCallback(
    async (token: string) => {
      setSignInError(null);
      if (!token.trim()) throw new ApiError(400, 3, "Enter an API token.");
      generation.current++;
      await start(token);
    },
    [start],
  );

  const loadAuthConfig = useCallback(
    () => fetchAuthConfig({ ...(baseUrl !== undefined && { baseUrl }), ...(fetch && { fetch }) }),
    [baseUrl, fetch],
  );

  const signInWithProvider = useCallback(
    (loginUrl: string) => {
      rememberRoute(window.location.hash);
      (loadPage ?? ((url: string) => window.location.assign(url)))(loginUrl);
    },
    [loadPage],
  );

  useEffect(() => {
    // The session token must leave the address bar and the history before
    // anything else happens; the remembered route takes its place.
    if (arrival) finishArrival(arrival);
    const token = arrival ? arrival.token : readToken();
    if (!token) return;
    let cancelled = false;
    start(token).then(
      () => {
        if (!cancelled) setRestoring(false);
      },
      (e: unknown) => {
        if (cancelled) return;
        sessionStorage.removeItem(tokenStorageKey);
        if (arrival) setSignInError(`The sign-in could not be completed: ${errorMessage(e)}`);
        else setNotice(e instanceof ApiError && e.unauthenticated ? expiredNotice : `Could not check your session: ${errorMessage(e)}`);
        setRestoring(false);
      },
    );
    return () => {
      cancelled = true;
    };
  }, [start, arrival]);

  const value = useMemo(
    () => ({ session, restoring, notice, signInError, signIn, signOut, loadAuthConfig, signInWithProvider }),
    [session, restoring, notice, signInError, signIn, signOut, loadAuthConfig, signInWithProvider],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/**
 * revoke asks the API to revoke the token api sends. Best effort: a failure
 * or a gateway slower than revokeTimeoutMs must not keep anyone signed in, so
 * it never throws.
 */
async function revoke(api: ApiClient): Promise<void> {
  try {
    await api.POST("/v1/users/me:signOut", { body: {}, signal: AbortSignal.timeout(revokeTimeoutMs) });
  } catch {
    // Unreachable or too slow: the token is forgotten all the same.
  }
}

function readToken(): string | null {
  try {
    return sessionStorage.getItem(tokenStorageKey);
  } catch {
    return null;
  }
}

/** errorMessage is what people read about a failure. */
export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof TypeError) return "The gateway cannot be reached. Check your connection and try again.";
  return e instanceof Error ? e.message : String(e);
}

/**
 * fieldMessage says a field's error with the label people see in place of the
 * field path the server names: "store.display_name: is required" becomes
 * "Store name is required".
 */
export function fieldMessage(error: ApiError, label: string): string {
  const prefix = `${error.field}: `;
  return error.field && error.message.startsWith(prefix) ? `${label} ${error.message.slice(prefix.length)}` : error.message;
}

/** useSessionState returns the session context; it must be used below SessionProvider. */
export function useSessionState(): SessionContextValue {
  const v = useContext(SessionContext);
  if (!v) throw new Error("useSessionState must be used below SessionProvider");
  return v;
}

/** useSession returns the signed-in session; it must be used only while signed in. */
export function useSession(): Session & { signOut: () => Promise<void> } {
  const { session, signOut } = useSessionState();
  if (!session) throw new Error("useSession must be used while signed in");
  return { ...session, signOut };
}
