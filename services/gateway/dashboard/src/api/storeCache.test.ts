import { describe, expect, it } from "vitest";
import { compareTimestamps, upsertStore } from "./storeCache";
import { store } from "../test/fakeGateway";

describe("compareTimestamps", () => {
  it("orders by nanoseconds that Date would round away", () => {
    expect(compareTimestamps("2026-01-02T10:00:00.000000001Z", "2026-01-02T10:00:00Z")).toBeGreaterThan(0);
    expect(compareTimestamps("2026-01-02T10:00:00.1Z", "2026-01-02T10:00:00.099999999Z")).toBeGreaterThan(0);
    expect(compareTimestamps("2026-01-02T11:00:00+01:00", "2026-01-02T10:00:00Z")).toBe(0);
    expect(compareTimestamps(undefined, "2026-01-02T10:00:00Z")).toBeLessThan(0);
  });
});

describe("upsertStore", () => {
  const a = store({ id: "a", createTime: "2026-01-01T00:00:00Z", updateTime: "2026-01-01T00:00:05.5Z" });
  const b = store({ id: "b", createTime: "2026-01-03T00:00:00Z" });

  it("inserts newest first", () => {
    expect(upsertStore([a], b).map((s) => s.id)).toEqual(["b", "a"]);
  });

  it("replaces a store with a newer state and ignores an older one", () => {
    const ready = { ...a, phase: "PHASE_READY" as const, updateTime: "2026-01-01T00:00:05.500000001Z" };
    const list = upsertStore([a, b], ready);
    expect(list.find((s) => s.id === "a")?.phase).toBe("PHASE_READY");
    const stale = { ...a, phase: "PHASE_PROVISIONING" as const };
    expect(upsertStore(list, stale)).toBe(list);
  });

  it("breaks a tie of update times with the generation", () => {
    const retried = { ...a, generation: "2", phase: "PHASE_PROVISIONING" as const };
    const list = upsertStore([a], retried);
    expect(upsertStore(list, { ...a, generation: "1", phase: "PHASE_FAILED" })[0]?.phase).toBe("PHASE_PROVISIONING");
  });
});
