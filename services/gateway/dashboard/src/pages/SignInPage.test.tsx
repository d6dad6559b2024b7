import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { tokenStorageKey } from "../session/session";
import { fakeGateway } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

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
    expect(gw.requests[0]).toMatchObject({ method: "GET", path: "/v1/users/me" });
    expect(sessionStorage.getItem(tokenStorageKey)).toBe(gw.token);

    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
  });

  it("signs out when the token is revoked during the session", async () => {
    const gw = fakeGateway();
    renderApp(gw);
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    gw.revoke();
    // The watch reconnects after its first backoff (about 1 s) and meets the 401.
    expect(await screen.findByText(/Your token is no longer accepted/, {}, { timeout: 4000 })).toBeInTheDocument();
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
    expect(sessionStorage.getItem(tokenStorageKey)).toBeNull();
  });

  it("ends a session whose stored token stopped working", async () => {
    const gw = fakeGateway();
    sessionStorage.setItem(tokenStorageKey, "revoked");
    renderApp(gw, { signedIn: false });
    expect(await screen.findByText(/Your token is no longer accepted/)).toBeInTheDocument();
    expect(screen.getByLabelText("API token")).toBeInTheDocument();
  });
});
