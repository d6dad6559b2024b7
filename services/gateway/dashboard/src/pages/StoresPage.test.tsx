import { act, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { fakeGateway, store } from "../test/fakeGateway";
import { renderApp } from "../test/renderApp";

function row(name: string): HTMLElement {
  const cell = screen.getByRole("rowheader", { name });
  return cell.closest("tr") as HTMLElement;
}

describe("store list", () => {
  it("shows each store's phase as a badge, a link to READY stores and why a store failed", async () => {
    const gw = fakeGateway({
      stores: [
        store({ id: "r1", displayName: "Ready Shop", phase: "PHASE_READY", url: "http://store-r1.localtest.me", engine: "ENGINE_MEDUSA" }),
        store({ id: "p1", displayName: "New Shop", phase: "PHASE_PROVISIONING" }),
        store({ id: "f1", displayName: "Broken Shop", phase: "PHASE_FAILED", failureReason: "Timeout", failureMessage: "not ready within 10m0s" }),
        store({ id: "d1", displayName: "Going Shop", phase: "PHASE_DELETING" }),
        store({ id: "x1", displayName: "Gone Shop", phase: "PHASE_DELETED" }),
      ],
    });
    const { user } = renderApp(gw);
    const table = await screen.findByRole("table", { name: "Stores" });

    const ready = row("Ready Shop");
    expect(within(ready).getByText("Ready")).toHaveAttribute("data-phase", "PHASE_READY");
    expect(within(ready).getByText("Medusa")).toBeInTheDocument();
    expect(within(ready).getByRole("link", { name: /store-r1\.localtest\.me/ })).toHaveAttribute("href", "http://store-r1.localtest.me");
    expect(within(ready).getByRole("link", { name: "Ready Shop" })).toHaveAttribute("href", "#/stores/r1");

    const provisioning = row("New Shop");
    expect(within(provisioning).getByText("Provisioning")).toHaveAttribute("data-phase", "PHASE_PROVISIONING");
    expect(within(provisioning).queryByRole("link", { name: /localtest/ })).toBeNull();
    expect(within(provisioning).getByText("Not ready yet")).toBeInTheDocument();

    const failed = row("Broken Shop");
    expect(within(failed).getByText("Failed")).toHaveAttribute("data-phase", "PHASE_FAILED");
    expect(within(failed).getByText("Timeout")).toBeInTheDocument();
    expect(within(failed).getByText(/not ready within 10m0s/)).toBeInTheDocument();
    expect(within(failed).getByRole("button", { name: "Retry Broken Shop" })).toBeInTheDocument();
    expect(within(ready).queryByRole("button", { name: /Retry/ })).toBeNull();

    expect(within(row("Going Shop")).getByText("Deleting")).toBeInTheDocument();
    expect(within(row("Going Shop")).queryByRole("button", { name: /Delete/ })).toBeNull();

    // Times are relative, with the exact time in the tooltip.
    const created = within(ready).getAllByText((_, el) => el?.tagName === "TIME")[0];
    expect(created).toHaveAttribute("dateTime", "2026-01-02T10:00:00.000Z");
    expect(created?.getAttribute("title")).toMatch(/2026/);

    // Deleted stores are hidden until asked for.
    expect(within(table).queryByText("Gone Shop")).toBeNull();
    await user.click(screen.getByRole("checkbox", { name: /Show deleted stores/ }));
    expect(within(row("Gone Shop")).getByText("Deleted")).toBeInTheDocument();
  });

  it("updates a row from the watch stream", async () => {
    const gw = fakeGateway({ stores: [store({ id: "p1", displayName: "New Shop" })] });
    renderApp(gw);
    expect(await screen.findByText("Live updates on")).toBeInTheDocument();
    expect(within(row("New Shop")).getByText("Provisioning")).toBeInTheDocument();

    act(() => {
      gw.update("p1", { phase: "PHASE_READY", url: "http://store-p1.localtest.me", chartVersion: "0.3.0" });
    });
    const link = await screen.findByRole("link", { name: /store-p1\.localtest\.me/ });
    expect(within(row("New Shop")).getByText("Ready")).toHaveAttribute("data-phase", "PHASE_READY");
    expect(link).toHaveAttribute("target", "_blank");
  });

  it("shows the empty state", async () => {
    renderApp(fakeGateway());
    expect(await screen.findByText(/No stores yet/)).toBeInTheDocument();
  });

  it("shows a loading state, then the server's error with a way to try again", async () => {
    const gw = fakeGateway({ stores: [store({ id: "a", displayName: "Shop A" })] });
    let failing = true;
    const fetch: typeof globalThis.fetch = async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      if (failing && new URL(req.url).pathname === "/v1/stores") {
        return new Response('{"code":14,"message":"the api service is unavailable: try again shortly","details":[]}', { status: 503 });
      }
      return gw.fetch(req);
    };
    const { user } = renderApp(gw, { fetch });
    expect(await screen.findByText("Loading stores…")).toBeInTheDocument();
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not load the stores: the api service is unavailable: try again shortly");
    failing = false;
    await user.click(within(alert).getByRole("button", { name: "Try again" }));
    expect(await screen.findByRole("rowheader", { name: "Shop A" })).toBeInTheDocument();
  });
});
