// Hash routing: #/ (stores), #/stores/<id>, #/activity?actor=…, #/tokens?user=…. The gateway
// serves one index.html, and hash URLs need nothing from it.
import { useSyncExternalStore } from "react";

/** A screen of the dashboard. */
export type Route =
  | { name: "stores" }
  | { name: "store"; id: string }
  | { name: "activity"; params: URLSearchParams }
  | { name: "tokens"; user: string }
  | { name: "notFound"; path: string };

/** parseHash returns the route a location hash names. */
export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = raw.split("?", 2);
  if (path === "/" || path === "/stores") return { name: "stores" };
  const store = /^\/stores\/([^/]+)$/.exec(path);
  if (store?.[1]) return { name: "store", id: decodeURIComponent(store[1]) };
  if (path === "/activity") return { name: "activity", params: new URLSearchParams(query) };
  if (path === "/tokens") return { name: "tokens", user: new URLSearchParams(query).get("user") ?? "" };
  return { name: "notFound", path };
}

/** Links to each screen. */
export const links = {
  stores: () => "#/",
  store: (id: string) => `#/stores/${encodeURIComponent(id)}`,
  activity: (params?: Record<string, string | undefined>) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params ?? {})) if (v) q.set(k, v);
    const s = q.toString();
    return s ? `#/activity?${s}` : "#/activity";
  },
  tokens: (user?: string) => (user ? `#/tokens?user=${encodeURIComponent(user)}` : "#/tokens"),
};

function subscribe(onChange: () => void): () => void {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}

/** useHash returns the location hash and re-renders when it changes. */
export function useHash(): string {
  return useSyncExternalStore(subscribe, () => window.location.hash);
}

/** navigate goes to a hash link such as links.store(id). */
export function navigate(to: string): void {
  window.location.hash = to.replace(/^#/, "");
}
