// The signed-in session: an API token checked with GET /v1/users/me, kept in
// sessionStorage (gone when the tab closes), and the typed client that sends it.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { ApiError, createApiClient, unwrap, type ApiClient, type User } from "../api/client";

/** sessionStorage key of the token. */
export const tokenStorageKey = "storeprov.token";

/** A signed-in user and the client that calls the API as them. */
export interface Session {
  token: string;
  user: User;
  api: ApiClient;
}

interface SessionContextValue {
  session: Session | null;
  /** True while a token found in sessionStorage is being checked. */
  restoring: boolean;
  /** Why the last session ended, when it did not end by signing out. */
  notice: string | null;
  /** signIn checks token and starts a session; it throws the ApiError that rejected it. */
  signIn: (token: string) => Promise<void>;
  /** signOut forgets the token and every cached answer. */
  signOut: (notice?: string) => void;
}

const SessionContext = createContext<SessionContextValue | null>(null);

/** Props of SessionProvider. */
export interface SessionProviderProps {
  children: ReactNode;
  /** Origin of the API; defaults to the page's. */
  baseUrl?: string;
  fetch?: typeof globalThis.fetch;
}

const expiredNotice = "Your token is no longer accepted. Sign in again with a valid token.";

/** SessionProvider holds the session for everything below it. */
export function SessionProvider({ children, baseUrl, fetch }: SessionProviderProps) {
  const queryClient = useQueryClient();
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [restoring, setRestoring] = useState(() => Boolean(readToken()));
  const generation = useRef(0);

  const signOut = useCallback(
    (why?: string) => {
      generation.current++;
      sessionStorage.removeItem(tokenStorageKey);
      queryClient.clear();
      setSession(null);
      setNotice(why ?? null);
    },
    [queryClient],
  );

  const start = useCallback(
    async (raw: string) => {
      const token = raw.trim();
      const mine = ++generation.current;
      let started = false;
      const api = createApiClient({
        token,
        ...(baseUrl !== undefined && { baseUrl }),
        ...(fetch && { fetch }),
        onUnauthenticated: () => {
          // Only a started, current session may end itself: a token rejected while
          // signing in is the sign-in's error, and a late 401 of an old session is stale.
          if (started && generation.current === mine) signOut(expiredNotice);
        },
      });
      const user = unwrap(await api.GET("/v1/users/me"));
      if (generation.current !== mine) return;
      started = true;
      sessionStorage.setItem(tokenStorageKey, token);
      setNotice(null);
      setSession({ token, user, api });
    },
    [baseUrl, fetch, signOut],
  );

  const signIn = useCallback(
    async (token: string) => {
      if (!token.trim()) throw new ApiError(400, 3, "Enter an API token.");
      generation.current++;
      await start(token);
    },
    [start],
  );

  useEffect(() => {
    const token = readToken();
    if (!token) return;
    let cancelled = false;
    start(token).then(
      () => {
        if (!cancelled) setRestoring(false);
      },
      (e: unknown) => {
        if (cancelled) return;
        sessionStorage.removeItem(tokenStorageKey);
        setNotice(e instanceof ApiError && e.unauthenticated ? expiredNotice : `Could not check your token: ${errorMessage(e)}`);
        setRestoring(false);
      },
    );
    return () => {
      cancelled = true;
    };
  }, [start]);

  const value = useMemo(() => ({ session, restoring, notice, signIn, signOut }), [session, restoring, notice, signIn, signOut]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
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
export function useSession(): Session & { signOut: (notice?: string) => void } {
  const { session, signOut } = useSessionState();
  if (!session) throw new Error("useSession must be used while signed in");
  return { ...session, signOut };
}
