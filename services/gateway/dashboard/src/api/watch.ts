// The store watch: GET /v1/stores:watch is a grpc-gateway server stream of
// newline-delimited JSON: {"result":{"store":{…}}} for every current store,
// then {"result":{"snapshotComplete":true}} once, then one line for every
// change; {"error":{…}} when the stream fails.
import { ApiError, parseErrorBody, type ApiClient, type Store } from "./client";
import type { components } from "./schema";

/**
 * NdjsonDecoder splits a byte stream into JSON values, one per line. Chunks
 * may end anywhere, even inside a multi-byte character; push returns the
 * values of the lines that chunk completed and keeps the rest for the next.
 * A line that is not JSON throws a SyntaxError.
 */
export class NdjsonDecoder {
  private buffer = "";
  private readonly text = new TextDecoder();

  /** push adds a chunk and returns the values of the lines it completed. */
  push(chunk: Uint8Array | string): unknown[] {
    this.buffer += typeof chunk === "string" ? chunk : this.text.decode(chunk, { stream: true });
    const lines = this.buffer.split("\n");
    this.buffer = lines.pop() ?? "";
    return parseLines(lines);
  }

  /** end returns the value of a last line that had no newline, if any. */
  end(): unknown[] {
    this.buffer += this.text.decode();
    const rest = this.buffer;
    this.buffer = "";
    return parseLines([rest]);
  }
}

function parseLines(lines: string[]): unknown[] {
  const out: unknown[] = [];
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed) out.push(JSON.parse(trimmed));
  }
  return out;
}

/** readNdjson yields the JSON values of a stream of newline-delimited JSON. */
export async function* readNdjson(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  const reader = body.getReader();
  const decoder = new NdjsonDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* decoder.push(value);
    }
    yield* decoder.end();
  } finally {
    // Cancelling tells fetch to close the connection when the consumer stops early.
    await reader.cancel().catch(() => undefined);
  }
}

/** One message of the watch stream. */
export type WatchMessage = { result?: components["schemas"]["v1WatchStoresResponse"]; error?: unknown };

/** What one watch message says: a store's new state, or that the snapshot is complete. */
export interface WatchEvent {
  store?: Store;
  /** True on the message that follows the current stores: every later message is a change. */
  snapshotComplete: boolean;
}

/**
 * watchEventOf reads one watch message, or throws the ApiError of an error
 * message. A message with neither a store nor the marker yields an empty event.
 */
export function watchEventOf(message: unknown): WatchEvent {
  if (!message || typeof message !== "object") return { snapshotComplete: false };
  const m = message as WatchMessage;
  if (m.error) throw parseErrorBody(200, m);
  const store = m.result?.store ?? undefined;
  return { ...(store && { store }), snapshotComplete: m.result?.snapshotComplete === true };
}

/**
 * Where the watch is: connecting (until the current stores have all arrived),
 * live (every change arrives as it happens), or waiting to reconnect.
 */
export type WatchState =
  | { status: "connecting" }
  | { status: "live" }
  | { status: "reconnecting"; retryInMs: number; error?: Error };

/** Backoff between reconnections: initialMs, doubled on each failure up to maxMs. */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** The default backoff: 1 s, 2 s, 4 s … 30 s. */
export const defaultBackoff: Backoff = { initialMs: 1000, maxMs: 30_000 };

/**
 * backoffDelay is the wait before reconnection attempt `attempt` (0-based),
 * with ±20% jitter so that many dashboards do not reconnect in step.
 */
export function backoffDelay(attempt: number, b: Backoff = defaultBackoff, random = Math.random): number {
  const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** Options of watchStores. */
export interface WatchOptions {
  api: ApiClient;
  /** Aborting it stops the watch and closes the connection. */
  signal: AbortSignal;
  /** Called with every store the stream sends, current state first. */
  onStore: (store: Store) => void;
  /** Called whenever the stream state changes; "live" comes with the snapshot marker. */
  onState?: (state: WatchState) => void;
  /** Called once when the token is rejected; the watch then stops. */
  onUnauthenticated?: () => void;
  backoff?: Backoff;
  /** Waits ms or until signal aborts; tests pass a fake clock. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * watchStores follows GET /v1/stores:watch until signal aborts, reconnecting
 * with backoff whenever the stream fails or ends. Each connection starts with
 * a snapshot of every store, so nothing missed while disconnected is lost;
 * the watch is live once the server marks the snapshot complete, and only a
 * connection that got that far resets the backoff. It stops for good only
 * when the token is rejected.
 */
export async function watchStores(opts: WatchOptions): Promise<void> {
  const { api, signal } = opts;
  const sleep = opts.sleep ?? abortableSleep;
  let attempt = 0;
  while (!signal.aborted) {
    opts.onState?.({ status: "connecting" });
    let error: Error | undefined;
    try {
      const { data, response, error: body } = await api.GET("/v1/stores:watch", { parseAs: "stream", signal });
      if (!response.ok || !data) throw parseErrorBody(response.status, body, response.statusText);
      for await (const message of readNdjson(data)) {
        const event = watchEventOf(message);
        if (event.store) opts.onStore(event.store);
        if (event.snapshotComplete) {
          attempt = 0;
          opts.onState?.({ status: "live" });
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.unauthenticated) {
        opts.onUnauthenticated?.();
        return;
      }
      error = e instanceof Error ? e : new Error(String(e));
    }
    if (signal.aborted) return;
    const retryInMs = backoffDelay(attempt++, opts.backoff, opts.random);
    opts.onState?.(error ? { status: "reconnecting", retryInMs, error } : { status: "reconnecting", retryInMs });
    await sleep(retryInMs, signal);
  }
}
