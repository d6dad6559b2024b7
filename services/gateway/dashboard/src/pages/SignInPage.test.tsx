import { act, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { queryKeys } from "../api/queries";
import { returnRouteStorageKey } from "../session/oidcRedirect";
import { tokenStorageKey } from "../session/session";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

const devIdP = { providerName: "Development IdP", loginUrl: "/auth/login" };

/** failing wraps the fake gateway's fetch so that requests for path get answer instead. */
function failing(gw: ReturnType<typeof fakeGateway>, path: string, answer: () => Promise<Response>): typeof fetch {
  return ((input: RequestInfo | URL, init?: RequestInit) => {
    const req = input instanceof Request ? input : new Request(input, init);
    return new URL(req.url).pathname === path ? answer() : gw.fetch(req);
  }) as typeof fetch;
}

describe("sign in", () => {
  it("rejects a token the API does not accept, with the server's message", async () => {
    const gw = fakeGateway();
    const { user } = renderApp(gw, { signedIn: false });
    await user.type(screen.getByLabelText("API token"), "wrong");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("the API token is not valid");
    expect(screen.getByLabelText("API token")).toHaveAttribute("aria-invalid", "true");
    expect(screen.queryByText(/no longer accepted/)).toBeNull();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
  });

  it("checks the token with /v1/users/me, keeps it for the tab, and forgets it on sign out", async () => {
    const gw = fakeGateway();
    const { user } = renderApp(gw, { signedIn: false });
    await user.type(screen.getByLabelText("API token"), gw.token);
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Stores" })).toBeInTheDocument();
    expect(screen.getByText("alice")).toBeInTheDocument();
    expect(gw.requests.filter((r) => r.path.startsWith("/v1/"))[0]).toMatchObject({ method: "GET", path: "/v1/users/me" });
    expect(sessionStorage.getItem(tokenStorageKey)).toBe(gw.token);

    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
    // An API token is only forgotten: the API revokes nothing for it.
    expect(gw.signOuts).toHaveLength(1);
    expect(gw.accepts(gw.token)).toBe(true);
  });

  it("signs out when the token is revoked during the session", async () => {
    const gw = fakeGateway();
    renderApp(gw);
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    gw.revoke();
    // The watch reconnects after its first backoff (about 1 s) and meets the 401.
    expect(await screen.findByText(/no longer accepted/, {}, { timeout: 4000 })).toBeInTheDocument();
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
    expect(gw.signOuts).toHaveLength(0);
  });

  it("ends a session whose stored token stopped working", async () => {
    const gw = fakeGateway();
    sessionStorage.setItem(tokenStorageKey, "revoked");
    renderApp(gw, { signedIn: false });
    expect(await screen.findByText(/no longer accepted/)).toBeInTheDocument();
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
    expect(gw.signOuts).toHaveLength(0);
  });
});

describe("sign in with the identity provider", () => {
  const cases: { name: string; gw: () => ReturnType<typeof fakeGateway>; fetch?: (gw: ReturnType<typeof fakeGateway>) => typeof fetch; want: boolean }[] = [
    { name: "offered when /auth/config says enabled", gw: () => fakeGateway({ oidc: devIdP }), want: true },
    { name: "not offered when /auth/config says disabled", gw: () => fakeGateway(), want: false },
    {
      name: "not offered when /auth/config cannot be fetched",
      gw: () => fakeGateway({ oidc: devIdP }),
      fetch: (gw) => failing(gw, "/auth/config", () => Promise.reject(new TypeError("Failed to fetch"))),
      want: false,
    },
    {
      name: "not offered when /auth/config fails (an older gateway)",
      gw: () => fakeGateway({ oidc: devIdP }),
      fetch: (gw) => failing(gw, "/auth/config", async () => new Response("404 page not found", { status: 404 })),
      want: false,
    },
  ];
  for (const c of cases) {
    it(`is ${c.name}`, async () => {
      const gw = c.gw();
      const { queryClient } = renderApp(gw, { signedIn: false, ...(c.fetch && { fetch: c.fetch(gw) }) });
      await waitFor(() => expect(queryClient.getQueryState(queryKeys.authConfig)?.status).toBe("success"));
      await act(async () => {});
      expect(screen.queryByRole("button", { name: "Sign in with Development IdP" }) !== null).toBe(c.want);
      // The token form is there either way.
      expect(screen.getByLabelText("API token")).toBeInTheDocument();
    });
  }

  it("remembers the route, then loads the gateway's login page", async () => {
    const gw = fakeGateway({ oidc: devIdP });
    const { user, loadPage } = renderApp(gw, { signedIn: false, hash: "#/stores/abc" });
    const button = await screen.findByRole("button", { name: "Sign in with Development IdP" });
    // Reachable by keyboard: after the token field and its Sign in button.
    expect(screen.getByLabelText("API token")).toHaveFocus();
    await user.tab();
    await user.tab();
    expect(button).toHaveFocus();
    await user.keyboard("{Enter}");
    expect(loadPage).toHaveBeenCalledTimes(1);
    expect(loadPage).toHaveBeenCalledWith("http://gateway.test/auth/login");
    expect(sessionStorage.getItem(returnRouteStorageKey)).toBe("#/stores/abc");
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
  });

  it("takes the session token out of the address and lands signed in on the remembered route", async () => {
    const gw = fakeGateway({ stores: [store({ id: "abc", displayName: "Corner Shop", phase: "PHASE_READY" })] });
    sessionStorage.setItem(returnRouteStorageKey, "#/stores/abc");
    window.location.hash = "#/";
    const historyBefore = window.history.length;
    renderApp(gw, { signedIn: false, hash: `#session=${gw.sessionToken}` });
    // The token leaves the address bar at once, without a new history entry.
    await waitFor(() => expect(window.location.hash).toBe("#/stores/abc"));
    expect(window.location.href).not.toContain(gw.sessionToken);
    expect(window.history.length).toBe(historyBefore + 1); // renderApp's own hash change only
    expect(await screen.findByRole("heading", { level: 1, name: "Corner Shop" })).toBeInTheDocument();
    expect(within(screen.getByRole("banner")).getByText("alice")).toBeInTheDocument();
    expect(gw.requests.find((r) => r.path === "/v1/users/me")?.authorization).toBe(`Bearer ${gw.sessionToken}`);
    expect(sessionStorage.getItem(tokenStorageKey)).toBe(gw.sessionToken);
    expect(sessionStorage.getItem(returnRouteStorageKey)).toBeNull();
  });

  it("takes the session token in StrictMode too, where effects run twice", async () => {
    const gw = fakeGateway();
    sessionStorage.setItem(returnRouteStorageKey, "#/activity");
    renderApp(gw, { signedIn: false, hash: `#session=${gw.sessionToken}`, strict: true });
    expect(await screen.findByRole("heading", { level: 1, name: "Activity" })).toBeInTheDocument();
    expect(window.location.hash).toBe("#/activity");
    expect(sessionStorage.getItem(tokenStorageKey)).toBe(gw.sessionToken);
  });

  it("lands on the store list when no route was remembered", async () => {
    const gw = fakeGateway();
    renderApp(gw, { signedIn: false, hash: `#session=${gw.sessionToken}` });
    expect(await screen.findByRole("heading", { level: 1, name: "Stores" })).toBeInTheDocument();
    expect(window.location.hash).toBe("#/");
  });

  it("shows why the sign-in failed, and still takes a token", async () => {
    const gw = fakeGateway({ oidc: devIdP });
    sessionStorage.setItem(returnRouteStorageKey, "#/activity");
    const message = "the identity provider refused the sign-in: access_denied";
    const { user } = renderApp(gw, { signedIn: false, hash: `#signin_error=${encodeURIComponent(message)}` });
    expect(await screen.findByRole("alert")).toHaveTextContent(message);
    expect(window.location.hash).toBe("#/activity");
    expect(sessionStorage.getItem(returnRouteStorageKey)).toBeNull();
    expect(await screen.findByRole("button", { name: "Sign in with Development IdP" })).toBeInTheDocument();

    await user.type(screen.getByLabelText("API token"), gw.token);
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Activity" })).toBeInTheDocument();
    expect(screen.queryByText(message)).toBeNull();
  });

  it("says so when the gateway hands over a token the API refuses", async () => {
    const gw = fakeGateway();
    renderApp(gw, { signedIn: false, hash: "#session=sp_not-a-session" });
    expect(await screen.findByRole("alert")).toHaveTextContent(/sign-in could not be completed: the API token is not valid/);
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
    expect(window.location.href).not.toContain("sp_not-a-session");
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
  });
});

describe("sign out", () => {
  it("revokes the session token once, then forgets it", async () => {
    const gw = fakeGateway();
    const { user } = renderApp(gw, { signedIn: false, hash: `#session=${gw.sessionToken}` });
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("API token")).toBeInTheDocument();
    expect(gw.signOuts).toHaveLength(1);
    expect(gw.signOuts[0]).toMatchObject({ body: {}, authorization: `Bearer ${gw.sessionToken}` });
    expect(gw.accepts(gw.sessionToken)).toBe(false);
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
    // Signing out is no expiry: no notice, and the refused token ended no second session.
    expect(screen.queryByText(/no longer accepted/)).toBeNull();
  });

  it("forgets the token even when the gateway cannot be reached", async () => {
    const gw = fakeGateway();
    const offline = failing(gw, "/v1/users/me:signOut", () => Promise.reject(new TypeError("Failed to fetch")));
    const { user } = renderApp(gw, { fetch: offline });
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("does not call signOut when an expired session token ends the session", async () => {
    const gw = fakeGateway();
    const { user } = renderApp(gw, { signedIn: false, hash: `#session=${gw.sessionToken}` });
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    gw.revoke();
    // The next call meets the 401: the activity page asks for the audit log.
    await user.click(screen.getByRole("link", { name: "Activity" }));
    expect(await screen.findByText(/Your session ended: its token is no longer accepted/)).toBeInTheDocument();
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
    expect(gw.signOuts).toHaveLength(0);
  });
});
