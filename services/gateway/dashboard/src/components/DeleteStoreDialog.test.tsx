import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

describe("delete confirmation", () => {
  it("names the store, cancels without deleting and gives focus back", async () => {
    const gw = fakeGateway({ stores: [store({ id: "c1", displayName: "Corner Shop", phase: "PHASE_READY", url: "http://c1.test" })] });
    const { user } = renderApp(gw);
    const del = await screen.findByRole("button", { name: "Delete Corner Shop" });
    await user.click(del);

    const dialog = screen.getByRole("dialog", { name: "Delete “Corner Shop”?" });
    expect(dialog).toHaveAttribute("open");
    expect(dialog).toHaveAccessibleDescription(expect.stringContaining("removes the store Corner Shop (c1)"));
    expect(within(dialog).getByText("store-c1")).toBeInTheDocument();
    expect(within(dialog).getByRole("button", { name: "Cancel" })).toHaveFocus();

    await user.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(del).toHaveFocus();
    expect(gw.requests.some((r) => r.method === "DELETE")).toBe(false);
  });

  it("deletes on confirmation and shows the store as deleting", async () => {
    const gw = fakeGateway({ stores: [store({ id: "c1", displayName: "Corner Shop", phase: "PHASE_READY", url: "http://c1.test" })] });
    const { user } = renderApp(gw);
    await user.click(await screen.findByRole("button", { name: "Delete Corner Shop" }));
    await user.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Delete store" }));

    const tr = (await screen.findByText("Deleting")).closest("tr") as HTMLElement;
    expect(within(tr).getByRole("rowheader")).toHaveTextContent("Corner Shop");
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(within(tr).queryByRole("button", { name: /Delete/ })).toBeNull();
    expect(gw.requests.filter((r) => r.method === "DELETE").map((r) => r.path)).toEqual(["/v1/stores/c1"]);
  });
});
