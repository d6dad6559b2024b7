import { act, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

const entries = [
  { id: "e1", action: "create", actor: "alice", storeId: "f1", time: "2026-01-02T10:00:00Z", detail: "", storeOwner: "alice" },
  { id: "e2", action: "failure", actor: "orchestrator", storeId: "f1", time: "2026-01-02T10:10:00Z", detail: "Timeout: not ready within 10m0s", storeOwner: "alice" },
  { id: "e3", action: "create", actor: "bob", storeId: "other", time: "2026-01-02T10:11:00Z", detail: "", storeOwner: "bob" },
];

describe("store detail", () => {
  it("shows status, where the store runs, how to read its admin password, and its history", async () => {
    const gw = fakeGateway({
      stores: [
        store({
          id: "f1",
          displayName: "Broken Shop",
          phase: "PHASE_FAILED",
          failureReason: "Timeout",
          failureMessage: "not ready within 10m0s",
          chartVersion: "0.3.0",
          generation: "1",
        }),
      ],
      audit: entries,
    });
    const { user } = renderApp(gw, { hash: "#/stores/f1" });
    expect(await screen.findByRole("heading", { level: 1, name: "Broken Shop" })).toBeInTheDocument();
    expect(screen.getByText("0.3.0")).toBeInTheDocument();
    expect(screen.getAllByText("store-f1").length).toBeGreaterThan(0);
    expect(screen.getByText("kubectl -n store-f1 get secret store-admin -o jsonpath='{.data.password}' | base64 -d")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Copy command" })).toBeInTheDocument();

    const history = await screen.findByRole("list", { name: "History" });
    const items = within(history).getAllByRole("listitem");
    expect(items.map((i) => i.textContent)).toEqual([
      expect.stringContaining("Created by alice"),
      expect.stringContaining("Timeout: not ready within 10m0s"),
    ]);
    expect(gw.requests.find((r) => r.path === "/v1/auditEntries")?.search.get("storeId")).toBe("f1");
    // The dashboard never asks for the secret itself.
    expect(gw.requests.every((r) => r.path.startsWith("/v1/") && !/secret|password/i.test(r.path))).toBe(true);

    await user.click(screen.getByRole("button", { name: "Retry Broken Shop" }));
    expect(await screen.findByText("Provisioning", { selector: ".badge" })).toBeInTheDocument();
    expect(gw.requests.some((r) => r.method === "POST" && r.path === "/v1/stores/f1:retry")).toBe(true);

    act(() => {
      gw.update("f1", { phase: "PHASE_READY", url: "http://store-f1.localtest.me" });
    });
    expect(await screen.findByRole("link", { name: /store-f1\.localtest\.me/ })).toBeInTheDocument();
  });

  it("says when the store does not exist", async () => {
    renderApp(fakeGateway(), { hash: "#/stores/nope" });
    expect(await screen.findByRole("heading", { level: 1, name: "Store not found" })).toBeInTheDocument();
  });
});
