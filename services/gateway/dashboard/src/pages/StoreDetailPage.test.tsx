import { act, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { historyLags } from "./StoreDetailPage";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

const entries = [
  { id: "e1", action: "create", actor: "alice", storeId: "f1", time: "2026-01-02T10:00:00Z", detail: "", storeOwner: "alice" },
  { id: "e2", action: "failure", actor: "orchestrator", storeId: "f1", time: "2026-01-02T10:10:00Z", detail: "Timeout: not ready within 10m0s", storeOwner: "alice" },
  { id: "e3", action: "create", actor: "bob", storeId: "other", time: "2026-01-02T10:11:00Z", detail: "", storeOwner: "bob" },
];

describe("historyLags", () => {
  const now = Date.parse("2026-01-02T12:00:30Z");
  const at = "2026-01-02T12:00:00Z";
  const entry = (action: string) => ({ id: action, action, actor: "a", storeId: "s", time: at });
  it.each([
    { name: "READY, log ends with ready", phase: "PHASE_READY", actions: ["create", "ready"], lags: false },
    { name: "READY, log ends with create", phase: "PHASE_READY", actions: ["create"], lags: true },
    { name: "PROVISIONING after retry", phase: "PHASE_PROVISIONING", actions: ["create", "failure", "retry"], lags: false },
    { name: "DELETED, log ends with delete", phase: "PHASE_DELETED", actions: ["create", "ready", "delete"], lags: true },
    { name: "empty log", phase: "PHASE_PROVISIONING", actions: [], lags: true },
  ] as const)("$name: $lags", ({ phase, actions, lags }) => {
    expect(historyLags({ phase, updateTime: at }, actions.map(entry), now)).toBe(lags);
  });
  it("gives up a minute after the store changed", () => {
    expect(historyLags({ phase: "PHASE_READY", updateTime: at }, [entry("create")], now + 60_000)).toBe(false);
  });
});

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

  it("says when the order check last passed, or that none ran", async () => {
    const passed = new Date(Date.now() - 5 * 60_000).toISOString();
    const gw = fakeGateway({
      stores: [
        store({ id: "c1", displayName: "Checked Shop", phase: "PHASE_READY", orderCheckTime: passed }),
        store({ id: "u1", displayName: "Unchecked Shop", phase: "PHASE_READY" }),
      ],
      audit: [],
    });
    const { unmount } = renderApp(gw, { hash: "#/stores/c1" });
    expect(await screen.findByRole("heading", { level: 1, name: "Checked Shop" })).toBeInTheDocument();
    const checked = screen.getByText("Order check").nextElementSibling as HTMLElement;
    expect(checked.textContent).toBe("passed 5 minutes ago");
    expect(within(checked).getByText("5 minutes ago").getAttribute("datetime")).toBe(passed);
    unmount();

    renderApp(gw, { hash: "#/stores/u1" });
    expect(await screen.findByRole("heading", { level: 1, name: "Unchecked Shop" })).toBeInTheDocument();
    expect((screen.getByText("Order check").nextElementSibling as HTMLElement).textContent).toBe("not run");
  });

  it("asks for the history again until it records the phase the store is in", async () => {
    const justNow = new Date().toISOString();
    const gw = fakeGateway({
      stores: [store({ id: "r1", displayName: "Fresh Shop", phase: "PHASE_READY", updateTime: justNow })],
      audit: [{ id: "e1", action: "create", actor: "alice", storeId: "r1", time: justNow, detail: "", storeOwner: "alice" }],
    });
    renderApp(gw, { hash: "#/stores/r1" });
    const history = await screen.findByRole("list", { name: "History" });
    expect(within(history).getAllByRole("listitem")).toHaveLength(1);
    // The audit service records "ready" a moment after the store became READY.
    gw.record({ id: "e2", action: "ready", actor: "system:orchestrator", storeId: "r1", time: justNow, detail: "", storeOwner: "alice" });
    expect(await within(history).findByText("Became ready", {}, { timeout: 5000 })).toBeInTheDocument();
    const asked = () => gw.requests.filter((r) => r.path === "/v1/auditEntries").length;
    const afterCatchingUp = asked();
    await new Promise((r) => setTimeout(r, 2500));
    expect(asked(), "no more polling once the history is current").toBe(afterCatchingUp);
  });

  it("upgrades a READY store to the chart version asked for, or the newest, and says why the last upgrade was rolled back", async () => {
    const gw = fakeGateway({
      stores: [
        store({
          id: "u1",
          displayName: "Busy Shop",
          phase: "PHASE_READY",
          chartVersion: "0.3.0",
          failureReason: "UpgradeRolledBack",
          failureMessage: "release 0.4.0 was not ready within 10m0s",
        }),
      ],
    });
    const { user } = renderApp(gw, { hash: "#/stores/u1" });
    const form = await screen.findByRole("form", { name: "Upgrade" });
    expect(within(form).getByText(/release 0\.4\.0 was not ready/)).toBeInTheDocument();
    const version = within(form).getByLabelText("Chart version");
    expect(version).toHaveAccessibleDescription(expect.stringContaining("Now on chart 0.3.0. Leave empty for the newest version."));

    await user.type(version, "latest");
    await user.click(within(form).getByRole("button", { name: "Upgrade store" }));
    expect(await within(form).findByText(/^Chart version "latest" is not a version/)).toBeInTheDocument();
    expect(version).toHaveAttribute("aria-invalid", "true");
    expect(version).toHaveFocus();

    await user.clear(version);
    await user.type(version, "0.4.1");
    await user.click(within(form).getByRole("button", { name: "Upgrade store" }));
    expect(await within(form).findByText("Upgrade to chart 0.4.1 requested: the store is provisioning.")).toBeInTheDocument();
    expect(screen.getByText("Provisioning", { selector: ".badge" })).toBeInTheDocument();
    expect(within(form).getByRole("button", { name: "Upgrade store" })).toBeDisabled();
    const upgrades = gw.requests.filter((r) => r.path === "/v1/stores/u1:upgrade");
    expect(upgrades.map((r) => r.body)).toEqual([{ chartVersion: "latest" }, { chartVersion: "0.4.1" }]);

    act(() => {
      gw.update("u1", { phase: "PHASE_READY", failureReason: "", failureMessage: "" });
    });
    await waitFor(() => expect(within(form).getByRole("button", { name: "Upgrade store" })).toBeEnabled());
    await user.click(within(form).getByRole("button", { name: "Upgrade store" }));
    expect(await within(form).findByText("Upgrade to the newest chart requested: the store is provisioning.")).toBeInTheDocument();
    expect(gw.requests.filter((r) => r.path === "/v1/stores/u1:upgrade").at(-1)?.body).toEqual({});
  });

  it("offers no upgrade for a store that is not READY or provisioning", async () => {
    renderApp(fakeGateway({ stores: [store({ id: "d1", displayName: "Gone Shop", phase: "PHASE_DELETED" })] }), { hash: "#/stores/d1" });
    expect(await screen.findByRole("heading", { level: 1, name: "Gone Shop" })).toBeInTheDocument();
    expect(screen.queryByRole("form", { name: "Upgrade" })).not.toBeInTheDocument();
  });

  it("says when the store does not exist", async () => {
    renderApp(fakeGateway(), { hash: "#/stores/nope" });
    expect(await screen.findByRole("heading", { level: 1, name: "Store not found" })).toBeInTheDocument();
  });
});
