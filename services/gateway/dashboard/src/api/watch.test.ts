// @vitest-environment node
import { describe, expect, it } from "vitest";
import { ApiError, createApiClient, type Store } from "./client";
import { backoffDelay, NdjsonDecoder, readNdjson, watchEventOf, watchStores, type WatchState } from "./watch";

const enc = new TextEncoder();

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(typeof ch === "string" ? enc.encode(ch) : ch);
      c.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const v of readNdjson(stream)) out.push(v);
  return out;
}

describe("NdjsonDecoder", () => {
  it("joins a message split across chunks", () => {
    const d = new NdjsonDecoder();
    expect(d.push('{"result":{"sto')).toEqual([]);
    expect(d.push('re":{"id":"a1"}}')).toEqual([]);
    expect(d.push('}\n{"result"')).toEqual([{ result: { store: { id: "a1" } } }]);
    expect(d.push(':{}}\n')).toEqual([{ result: {} }]);
    expect(d.end()).toEqual([]);
  });

  it("returns every message a chunk completes, in order, skipping blank lines", () => {
    const d = new NdjsonDecoder();
    expect(d.push('{"n":1}\n\n{"n":2}\r\n{"n":3}\n{"n"')).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(d.push(":4}")).toEqual([]);
    expect(d.end()).toEqual([{ n: 4 }]);
  });

  it("decodes a multi-byte character split between chunks", () => {
    const bytes = enc.encode('{"displayName":"Café 🛒"}\n');
    const cut = bytes.indexOf(0xc3) + 1; // inside "é"
    const d = new NdjsonDecoder();
    expect(d.push(bytes.slice(0, cut))).toEqual([]);
    expect(d.push(bytes.slice(cut, cut + 8))).toEqual([]);
    expect(d.push(bytes.slice(cut + 8))).toEqual([{ displayName: "Café 🛒" }]);
  });

  it("throws on a line that is not JSON", () => {
    expect(() => new NdjsonDecoder().push("not json\n")).toThrow(SyntaxError);
  });
});

describe("readNdjson", () => {
  it("yields the messages of a stream cut at arbitrary byte offsets", async () => {
    const text = '{"result":{"store":{"id":"a"}}}\n{"result":{"store":{"id":"b"}}}\n';
    const bytes = enc.encode(text);
    for (const size of [1, 2, 7, 31, bytes.length]) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
      expect(await collect(streamOf(chunks)), `chunks of ${size}`).toEqual([
        { result: { store: { id: "a" } } },
        { result: { store: { id: "b" } } },
      ]);
    }
  });
});

describe("watchEventOf", () => {
  it("returns the store of a result, the snapshot marker, and throws the ApiError of an error", () => {
    expect(watchEventOf({ result: { store: { id: "a" } } })).toEqual({ store: { id: "a" }, snapshotComplete: false });
    expect(watchEventOf({ result: { snapshotComplete: true } })).toEqual({ snapshotComplete: true });
    expect(watchEventOf({ result: {} })).toEqual({ snapshotComplete: false });
    let err: unknown;
    try {
      watchEventOf({ error: { code: 16, message: "token revoked", details: [] } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).unauthenticated).toBe(true);
    expect((err as ApiError).message).toBe("token revoked");
  });
});

describe("backoffDelay", () => {
  it("doubles from the initial delay up to the maximum, with ±20% jitter", () => {
    const b = { initialMs: 1000, maxMs: 8000 };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, b, () => 0.5))).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    expect(backoffDelay(0, b, () => 0)).toBe(800);
    expect(backoffDelay(0, b, () => 1)).toBe(1200);
  });
});

describe("watchStores", () => {
  const line = (s: Store) => JSON.stringify({ result: { store: s } }) + "\n";
  const snapshotComplete = JSON.stringify({ result: { snapshotComplete: true } }) + "\n";

  it("reconnects with growing backoff after failures and resets it after a complete snapshot", async () => {
    const answers: (() => Response)[] = [
      () => new Response(streamOf([line({ id: "a", displayName: "A", engine: "ENGINE_MEDUSA" }), snapshotComplete])),
      () => new Response('{"code":14,"message":"api unavailable"}', { status: 503 }),
      () => new Response("<html>bad gateway</html>", { status: 502 }),
      () => new Response(streamOf([line({ id: "b", displayName: "B", engine: "ENGINE_MEDUSA" }).slice(0, 10)])),
      // A store without the marker is not a complete snapshot: the backoff keeps growing.
      () => new Response(streamOf([line({ id: "c", displayName: "C", engine: "ENGINE_MEDUSA" })])),
      () => new Response(streamOf([line({ id: "d", displayName: "D", engine: "ENGINE_MEDUSA" }), snapshotComplete])),
    ];
    const ctrl = new AbortController();
    const seen: string[] = [];
    const sleeps: number[] = [];
    const states: WatchState["status"][] = [];
    const errors: string[] = [];
    let calls = 0;
    const api = createApiClient({
      token: "t",
      baseUrl: "http://gw",
      fetch: async (req) => {
        expect((req as Request).headers.get("Authorization")).toBe("Bearer t");
        const answer = answers[calls++];
        if (!answer) {
          ctrl.abort();
          throw new DOMException("aborted", "AbortError");
        }
        return answer();
      },
    });
    await watchStores({
      api,
      signal: ctrl.signal,
      onStore: (s) => seen.push(s.id ?? ""),
      onState: (s) => {
        states.push(s.status);
        if (s.status === "reconnecting" && s.error) errors.push(s.error.message);
      },
      random: () => 0.5,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect(seen).toEqual(["a", "c", "d"]);
    // After "a" and its marker: 1 s (attempt reset), then 2 s, 4 s after each failure;
    // the truncated line of the 4th answer is a failure too (8 s), and so is the stream
    // that ends before its marker (16 s); the complete snapshot with "d" resets to 1 s.
    expect(sleeps).toEqual([1000, 2000, 4000, 8000, 16000, 1000]);
    expect(errors).toEqual(["api unavailable", "The server answered 502", expect.stringContaining("JSON")]);
    // Live only with the marker: the stream of "c" (the 5th) never was.
    expect(states).toEqual([
      ...["connecting", "live", "reconnecting"],
      ...["connecting", "reconnecting"],
      ...["connecting", "reconnecting"],
      ...["connecting", "reconnecting"],
      ...["connecting", "reconnecting"],
      ...["connecting", "live", "reconnecting"],
      "connecting",
    ]);
  });

  it("stops and reports when the token is rejected", async () => {
    let calls = 0;
    let unauthenticated = 0;
    const api = createApiClient({
      token: "t",
      baseUrl: "http://gw",
      fetch: async () => {
        calls++;
        return new Response(JSON.stringify({ code: 16, message: "the API token is not valid" }), { status: 401 });
      },
    });
    await watchStores({
      api,
      signal: new AbortController().signal,
      onStore: () => undefined,
      onUnauthenticated: () => unauthenticated++,
      sleep: async () => undefined,
    });
    expect(calls).toBe(1);
    expect(unauthenticated).toBe(1);
  });

  it("stops on an error message in the stream that says the token is not valid", async () => {
    let unauthenticated = 0;
    const api = createApiClient({
      token: "t",
      baseUrl: "http://gw",
      fetch: async () => new Response(streamOf(['{"error":{"code":16,"message":"token revoked","details":[]}}\n'])),
    });
    await watchStores({
      api,
      signal: new AbortController().signal,
      onStore: () => undefined,
      onUnauthenticated: () => unauthenticated++,
      sleep: async () => undefined,
    });
    expect(unauthenticated).toBe(1);
  });
});
