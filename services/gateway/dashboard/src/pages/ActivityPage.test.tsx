import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";
import { fromLocalInput, toLocalInput } from "./ActivityPage";

const audit = [
  { id: "e1", action: "create", actor: "alice", storeId: "a1", time: "2026-01-02T10:00:00Z", detail: "", storeOwner: "alice" },
  { id: "e2", action: "ready", actor: "orchestrator", storeId: "a1", time: "2026-01-02T10:05:00Z", detail: "", storeOwner: "alice" },
  { id: "e3", action: "create", actor: "bob", storeId: "b1", time: "2026-01-02T10:06:00Z", detail: "", storeOwner: "bob" },
];

describe("activity", () => {
  it("lists the audit log and filters it by actor, action, store and time", async () => {
    const gw = fakeGateway({ stores: [store({ id: "a1", displayName: "Shop A" })], audit });
    const { user } = renderApp(gw, { hash: "#/activity" });
    const table = await screen.findByRole("table", { name: /Audit log/ });
    expect(within(table).getAllByRole("row")).toHaveLength(4);
    expect(within(table).getAllByRole("link", { name: "Shop A" })[0]).toHaveAttribute("href", "#/stores/a1");

    await user.type(screen.getByLabelText("Actor"), "alice");
    await user.selectOptions(screen.getByLabelText("Action"), "create");
    await user.type(screen.getByLabelText("Store ID"), "a1");
    await user.type(screen.getByLabelText("From"), "2026-01-02T09:00");
    await user.click(screen.getByRole("button", { name: "Apply filters" }));

    expect(await screen.findByRole("heading", { name: "Audit log (filtered)" })).toBeInTheDocument();
    expect(window.location.hash).toContain("actor=alice");
    const last = gw.requests.filter((r) => r.path === "/v1/auditEntries").at(-1);
    expect(Object.fromEntries(last?.search ?? [])).toMatchObject({
      actor: "alice",
      action: "create",
      storeId: "a1",
      startTime: new Date("2026-01-02T09:00").toISOString(),
    });
    const rows = within(await screen.findByRole("table", { name: /Audit log/ })).getAllByRole("row");
    expect(rows).toHaveLength(2);
  });

  it("converts between datetime-local values and RFC 3339", () => {
    const rfc = fromLocalInput("2026-03-04T05:06");
    expect(rfc).toBe(new Date("2026-03-04T05:06").toISOString());
    expect(toLocalInput(rfc)).toBe("2026-03-04T05:06");
    expect(fromLocalInput("")).toBe("");
  });
});
