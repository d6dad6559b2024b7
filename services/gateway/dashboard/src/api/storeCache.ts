// How stores from different answers (list, watch, mutations) are merged into
// one view: the newest state of each store wins, whatever order they arrive in.
import type { Store } from "./client";

/**
 * timestampKey turns an RFC 3339 timestamp with up to nanosecond precision
 * (as protojson writes them) into [milliseconds, nanoseconds within the
 * millisecond], which Date.parse alone would round away. Missing or invalid
 * timestamps sort first.
 */
export function timestampKey(ts: string | null | undefined): [number, number] {
  if (!ts) return [Number.NEGATIVE_INFINITY, 0];
  const m = /^(.+T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(ts);
  if (!m) {
    const ms = Date.parse(ts);
    return [Number.isNaN(ms) ? Number.NEGATIVE_INFINITY : ms, 0];
  }
  const frac = (m[2] ?? "").padEnd(9, "0");
  const ms = Date.parse(`${m[1]}${m[3]}`) + Number(frac.slice(0, 3));
  return [Number.isNaN(ms) ? Number.NEGATIVE_INFINITY : ms, Number(frac.slice(3))];
}

/** compareTimestamps orders two RFC 3339 timestamps: negative when a is earlier. */
export function compareTimestamps(a: string | null | undefined, b: string | null | undefined): number {
  const [am, an] = timestampKey(a);
  const [bm, bn] = timestampKey(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return an - bn;
}

function generationOf(s: Store): bigint {
  try {
    return BigInt(s.generation || "0");
  } catch {
    return 0n;
  }
}

/**
 * isOlder reports whether candidate is an older state of the same store than
 * current: an earlier update time, or the same time and a lower generation.
 * Equal states are not older, so a repeated message still applies.
 */
export function isOlder(candidate: Store, current: Store): boolean {
  const c = compareTimestamps(candidate.updateTime, current.updateTime);
  if (c !== 0) return c < 0;
  return generationOf(candidate) < generationOf(current);
}

/** byNewestFirst sorts stores the way ListStores does: newest created first. */
export function byNewestFirst(a: Store, b: Store): number {
  return compareTimestamps(b.createTime, a.createTime) || (a.id ?? "").localeCompare(b.id ?? "");
}

/**
 * upsertStore returns list with store added or replaced, newest first,
 * unless list already holds a newer state of it; then it returns list itself.
 */
export function upsertStore(list: readonly Store[] | undefined, store: Store): Store[] {
  const current = list ?? [];
  const i = current.findIndex((s) => s.id === store.id);
  if (i >= 0) {
    const existing = current[i] as Store;
    if (isOlder(store, existing)) return current as Store[];
    const next = current.slice();
    next[i] = store;
    return next;
  }
  return [...current, store].sort(byNewestFirst);
}
