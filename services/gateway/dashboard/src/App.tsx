import { useEffect } from "react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { ApiError } from "./api/client";
import { Layout } from "./components/Layout";
import { ActivityPage } from "./pages/ActivityPage";
import { SignInPage } from "./pages/SignInPage";
import { StoreDetailPage } from "./pages/StoreDetailPage";
import { StoresPage } from "./pages/StoresPage";
import { TokensPage } from "./pages/TokensPage";
import { links, parseHash, useHash, type Route } from "./router";
import { SessionProvider, useSessionState } from "./session/session";

/** newQueryClient returns the dashboard's query cache and its defaults. */
export function newQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // The watch keeps stores current; other answers may be 30 s old.
        staleTime: 30_000,
        refetchOnWindowFocus: false,
        // A 4xx will not go away by asking again; a 5xx or a lost connection may.
        retry: (count, err) => !(err instanceof ApiError && err.status < 500) && count < 2,
      },
      mutations: { retry: false },
    },
  });
}

const titles: Record<Route["name"], string> = {
  stores: "Stores",
  store: "Store",
  activity: "Activity",
  tokens: "Tokens",
  notFound: "Not found",
};

function Screen({ route }: { route: Route }) {
  switch (route.name) {
    case "stores":
      return <StoresPage />;
    case "store":
      return <StoreDetailPage key={route.id} id={route.id} />;
    case "activity":
      return <ActivityPage params={route.params} />;
    case "tokens":
      return <TokensPage key={route.user} user={route.user} />;
    case "notFound":
      return (
        <>
          <h1 tabIndex={-1}>Page not found</h1>
          <p>
            There is no page at <code>{route.path}</code>. <a href={links.stores()}>Go to the stores</a>.
          </p>
        </>
      );
  }
}

function Routed() {
  const { session, restoring } = useSessionState();
  const route = parseHash(useHash());
  useEffect(() => {
    // A store's page titles itself with the store's name.
    if (session && route.name === "store") return;
    document.title = session ? `${titles[route.name]} · storeprov` : "Sign in · storeprov";
  }, [route.name, session]);
  if (restoring) {
    return (
      <main id="main" className="signin">
        <p role="status">Checking your session…</p>
      </main>
    );
  }
  if (!session) return <SignInPage />;
  return (
    <Layout route={route}>
      <Screen route={route} />
    </Layout>
  );
}

/** Props of App; tests pass their own query client, fetch and page loader. */
export interface AppProps {
  queryClient: QueryClient;
  fetch?: typeof globalThis.fetch;
  baseUrl?: string;
  /** Loads another page (the identity provider's sign-in); defaults to window.location.assign. */
  loadPage?: (url: string) => void;
}

/** App is the whole dashboard. */
export function App({ queryClient, fetch, baseUrl, loadPage }: AppProps) {
  return (
    <QueryClientProvider client={queryClient}>
      <SessionProvider {...(fetch && { fetch })} {...(baseUrl !== undefined && { baseUrl })} {...(loadPage && { loadPage })}>
        <Routed />
      </SessionProvider>
    </QueryClientProvider>
  );
}
