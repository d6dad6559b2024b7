import { StrictMode } from "react";
import { render } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { vi } from "vitest";
import { App, newQueryClient } from "../App";
import { tokenStorageKey } from "../session/session";
import type { fakeGateway } from "./fakeGateway";

/**
 * renderApp renders the whole dashboard against a fake gateway, signed in
 * with its token unless signedIn is false, at the given hash route; in
 * StrictMode, as main.tsx renders it, when strict is true. loadPage, returned,
 * records the pages the dashboard would load (jsdom loads none).
 */
export function renderApp(
  gw: ReturnType<typeof fakeGateway>,
  opts: { hash?: string; signedIn?: boolean; fetch?: typeof fetch; strict?: boolean } = {},
) {
  if (opts.signedIn !== false) sessionStorage.setItem(tokenStorageKey, gw.token);
  window.location.hash = opts.hash ?? "#/";
  const queryClient = newQueryClient();
  // No retries in tests: an error shows at once.
  queryClient.setDefaultOptions({ queries: { ...queryClient.getDefaultOptions().queries, retry: false } });
  const user = userEvent.setup();
  const loadPage = vi.fn<(url: string) => void>();
  const app = <App queryClient={queryClient} fetch={opts.fetch ?? gw.fetch} baseUrl="http://gateway.test" loadPage={loadPage} />;
  const view = render(opts.strict ? <StrictMode>{app}</StrictMode> : app);
  return { ...view, user, queryClient, loadPage };
}
