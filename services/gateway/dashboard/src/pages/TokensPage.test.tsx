import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

const tokens = [
  {
    id: "1",
    user: "alice",
    description: "dashboard",
    kind: "TOKEN_KIND_API" as const,
    createTime: "2026-01-01T10:00:00Z",
    expireTime: "2026-04-01T10:00:00Z",
    lastUseTime: "2026-01-02T11:59:00Z",
  },
  {
    id: "2",
    user: "alice",
    description: "ci",
    kind: "TOKEN_KIND_API" as const,
    createTime: "2026-01-01T09:00:00Z",
    expireTime: "2026-01-31T09:00:00Z",
  },
  { id: "3", user: "bob", description: "bob's laptop", kind: "TOKEN_KIND_API" as const, createTime: "2026-01-01T09:00:00Z", expireTime: "2026-01-31T09:00:00Z" },
];

describe("tokens", () => {
  it("lists the caller's tokens with their expiry and last use, and revokes one at once", async () => {
    const gw = fakeGateway({ tokens });
    const { user } = renderApp(gw, { hash: "#/tokens" });
    expect(await screen.findByRole("heading", { name: "Your tokens" })).toBeInTheDocument();
    const table = await screen.findByRole("table", { name: "Tokens" });
    const rows = within(table).getAllByRole("row");
    expect(rows).toHaveLength(3);
    expect(within(rows[2] as HTMLElement).getByText("Never")).toBeInTheDocument();
    expect(within(table).queryByText("bob's laptop")).not.toBeInTheDocument();
    // Not an admin: no way to look at someone else's tokens.
    expect(screen.queryByRole("form", { name: "Show a user's tokens" })).not.toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Revoke token 2" }));
    const dialog = await screen.findByRole("dialog", { name: "Revoke token 2?" });
    await user.click(within(dialog).getByRole("button", { name: "Revoke" }));
    expect(gw.requests.some((r) => r.method === "DELETE" && r.path === "/v1/tokens/2")).toBe(true);
    await screen.findByRole("table", { name: "Tokens" });
    expect(await screen.findAllByRole("row")).toHaveLength(2);
  });

  it("creates a token and shows it once, with its lifetime and whose it is", async () => {
    const gw = fakeGateway({ tokens });
    const { user } = renderApp(gw, { hash: "#/tokens" });
    await screen.findByRole("table", { name: "Tokens" });
    await user.type(screen.getByLabelText("Description"), "deploy");
    await user.selectOptions(screen.getByLabelText("Expires after"), "7 days");
    await user.click(screen.getByRole("button", { name: "Create token" }));
    const shown = await screen.findByLabelText("New token");
    expect(shown.textContent).toMatch(/^sp_new-/);
    const post = gw.requests.find((r) => r.method === "POST" && r.path === "/v1/tokens");
    expect(post?.body).toEqual({ description: "deploy", ttl: "604800s" });
    expect(await screen.findByText("deploy")).toBeInTheDocument();
    expect(gw.accepts(shown.textContent ?? "")).toBe(true);
  });

  it("lets an admin see and revoke another user's tokens", async () => {
    const gw = fakeGateway({ tokens, user: { name: "alice", admin: true, storeQuota: 5, createTime: "2026-01-01T00:00:00Z" } });
    const { user } = renderApp(gw, { hash: "#/tokens" });
    await screen.findByRole("table", { name: "Tokens" });
    await user.type(screen.getByLabelText("User"), "bob");
    await user.click(screen.getByRole("button", { name: "Show tokens" }));
    expect(await screen.findByRole("heading", { name: "Tokens of bob" })).toBeInTheDocument();
    expect(window.location.hash).toBe("#/tokens?user=bob");
    expect(await screen.findByText("bob's laptop")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Revoke token 3" }));
    await user.click(within(await screen.findByRole("dialog")).getByRole("button", { name: "Revoke" }));
    expect(await screen.findByText("No tokens.")).toBeInTheDocument();
  });

  it("is linked from the navigation", async () => {
    const gw = fakeGateway({ tokens });
    const { user } = renderApp(gw);
    await user.click(await screen.findByRole("link", { name: "Tokens" }));
    expect(await screen.findByRole("heading", { name: "Your tokens" })).toBeInTheDocument();
  });
});
