// The browser's trip to the identity provider and back. Before it leaves, the
// dashboard remembers its hash route in sessionStorage; the gateway's
// /auth/callback then sends it to /#session=<token> after a sign-in, or to
// /#signin_error=<message> after a failed one. The dashboard reads that
// fragment on start, before routing, and puts the remembered route in its place.

/** sessionStorage key of the hash route to come back to after signing in with the identity provider. */
export const returnRouteStorageKey = "storeprov.returnTo";

/** The route to land on when none was remembered: the store list. */
const defaultRoute = "#/";

/**
 * rememberRoute keeps hash, the route shown before leaving for the identity
 * provider, for readArrival to return to. Anything but a route ("#/…") is
 * remembered as the store list.
 */
export function rememberRoute(hash: string): void {
  try {
    sessionStorage.setItem(returnRouteStorageKey, hash.startsWith("#/") ? hash : defaultRoute);
  } catch {
    // No storage (a private mode may refuse it): the sign-in lands on the store list.
  }
}

/** What the gateway's redirect after a sign-in with the identity provider carried. */
export type Arrival =
  | { token: string; error?: undefined; url: string }
  | { token?: undefined; error: string; url: string };

/**
 * readArrival returns what the fragment of location carries after a sign-in
 * with the identity provider: the session token, or why the sign-in failed;
 * url is the address to show instead (the remembered route). It returns null
 * for an ordinary route. It only reads: finishArrival changes the address.
 *
 * The fragment is read as application/x-www-form-urlencoded, as OAuth 2.0
 * reads the fragments it returns (RFC 6749, 4.2.2).
 */
export function readArrival(location: Pick<Location, "hash" | "pathname" | "search">): Arrival | null {
  const raw = location.hash.replace(/^#/, "");
  if (!raw || raw.startsWith("/")) return null;
  const params = new URLSearchParams(raw);
  const token = params.get("session");
  const error = params.get("signin_error");
  if (token === null && error === null) return null;
  const url = location.pathname + location.search + remembered();
  if (token?.trim()) return { token: token.trim(), url };
  return { error: error?.trim() || "The sign-in returned no session token. Try again.", url };
}

/**
 * finishArrival takes the fragment out of the address bar and the history,
 * with history.replaceState, showing the remembered route instead, and forgets
 * that route. Calling it twice is harmless.
 */
export function finishArrival(arrival: Arrival): void {
  window.history.replaceState(window.history.state, "", arrival.url);
  try {
    sessionStorage.removeItem(returnRouteStorageKey);
  } catch {
    // No storage: nothing was remembered.
  }
}

function remembered(): string {
  try {
    const route = sessionStorage.getItem(returnRouteStorageKey);
    return route?.startsWith("#/") ? route : defaultRoute;
  } catch {
    return defaultRoute;
  }
}
