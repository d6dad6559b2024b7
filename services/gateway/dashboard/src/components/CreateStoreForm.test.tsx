import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

describe("create store form", () => {
  it("shows the server's validation message on the field it names", async () => {
    const gw = fakeGateway();
    const { user } = renderApp(gw);
    await screen.findByText(/No stores yet/);
    const name = screen.getByLabelText("Store name");
    await user.type(name, "   ");
    await user.click(screen.getByRole("button", { name: "Create store" }));

    // The server names the field by its path; the form by its label.
    const message = "Store name is required: give the store a name of 1 to 63 characters";
    expect(await screen.findByText(message)).toBeInTheDocument();
    expect(name).toHaveAttribute("aria-invalid", "true");
    expect(name).toHaveAccessibleDescription(expect.stringContaining(message));
    expect(name).toHaveFocus();
    expect(gw.requests.filter((r) => r.method === "POST")).toHaveLength(1);
  });

  it("shows an error that names no field above the form", async () => {
    const gw = fakeGateway();
    const fetch: typeof globalThis.fetch = async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      if (req.method === "POST") {
        return new Response('{"code":8,"message":"quota of 1 store reached: delete a store first","details":[]}', { status: 429 });
      }
      return gw.fetch(req);
    };
    const { user } = renderApp(gw, { fetch });
    await screen.findByText(/No stores yet/);
    await user.type(screen.getByLabelText("Store name"), "Second");
    await user.click(screen.getByRole("button", { name: "Create store" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("quota of 1 store reached: delete a store first");
    expect(screen.getByLabelText("Store name")).not.toHaveAttribute("aria-invalid");
  });

  it("adds the new store to the list at once, as provisioning, with the chosen engine", async () => {
    const gw = fakeGateway({ stores: [store({ id: "old", displayName: "Old Shop", createTime: "2026-01-01T00:00:00Z" })] });
    const { user } = renderApp(gw);
    await screen.findByRole("rowheader", { name: "Old Shop" });
    await user.type(screen.getByLabelText("Store name"), "Corner Shop");
    await user.selectOptions(screen.getByLabelText("Engine"), "ENGINE_MEDUSA");
    await user.click(screen.getByRole("button", { name: "Create store" }));

    const cell = await screen.findByRole("rowheader", { name: "Corner Shop" });
    const tr = cell.closest("tr") as HTMLElement;
    expect(within(tr).getByText("Provisioning")).toHaveAttribute("data-phase", "PHASE_PROVISIONING");
    expect(within(tr).getByText("Medusa")).toBeInTheDocument();
    // Newest first.
    const names = screen.getAllByRole("rowheader").map((c) => c.textContent);
    expect(names).toEqual(["Corner Shop", "Old Shop"]);
    expect(screen.getByText("Store “Corner Shop” created: it is provisioning.")).toBeInTheDocument();
    expect(screen.getByLabelText("Store name")).toHaveValue("");
    expect(gw.requests.find((r) => r.method === "POST")?.body).toEqual({ displayName: "Corner Shop", engine: "ENGINE_MEDUSA" });
  });
});
