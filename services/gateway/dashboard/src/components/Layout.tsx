import { useEffect, useRef, useState, type ReactNode } from "react";
import { useStoreWatch } from "../api/queries";
import { links, type Route } from "../router";
import { useSession } from "../session/session";
import { WatchStatus } from "./WatchStatus";

/**
 * Layout is the frame of every signed-in screen: a skip link, the header with
 * navigation and the user, and the main region. It keeps the store watch
 * running for as long as the user is signed in, and moves focus to the new
 * screen's heading after navigation. Sign out waits for the API to revoke
 * the token (at most a few seconds) before the sign-in page shows.
 */
export function Layout({ route, children }: { route: Route; children: ReactNode }) {
  const { user, signOut } = useSession();
  const watch = useStoreWatch();
  const mainRef = useRef<HTMLElement>(null);
  const first = useRef(true);
  const [signingOut, setSigningOut] = useState(false);
  const routeKey = route.name === "store" ? `store:${route.id}` : route.name;

  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    mainRef.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [routeKey]);

  const section = route.name === "activity" || route.name === "tokens" ? route.name : "stores";
  return (
    <>
      <a className="skip-link" href="#main" onClick={(e) => {
        e.preventDefault();
        mainRef.current?.querySelector<HTMLElement>("h1")?.focus();
      }}>
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href={links.stores()}>
          storeprov
        </a>
        <nav aria-label="Main">
          <ul>
            <li>
              <a
                href={links.stores()}
                className={section === "stores" ? "active" : undefined}
                aria-current={route.name === "stores" ? "page" : undefined}
              >
                Stores
              </a>
            </li>
            <li>
              <a
                href={links.activity()}
                className={section === "activity" ? "active" : undefined}
                aria-current={route.name === "activity" ? "page" : undefined}
              >
                Activity
              </a>
            </li>
            <li>
              <a
                href={links.tokens()}
                className={section === "tokens" ? "active" : undefined}
                aria-current={route.name === "tokens" ? "page" : undefined}
              >
                Tokens
              </a>
            </li>
          </ul>
        </nav>
        <WatchStatus state={watch} />
        <div className="user">
          <span>
            Signed in as <strong>{user.name}</strong>
            {user.admin && <span className="tag">admin</span>}
          </span>
          <button
            type="button"
            className="button button-small"
            disabled={signingOut}
            onClick={() => {
              setSigningOut(true);
              void signOut();
            }}
          >
            {signingOut ? "Signing out…" : "Sign out"}
          </button>
        </div>
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
