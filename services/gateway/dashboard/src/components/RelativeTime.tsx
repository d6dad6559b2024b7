import { useSyncExternalStore } from "react";

// One clock for every relative time on the page, ticking twice a minute.
const listeners = new Set<() => void>();
let now = Date.now();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(onTick: () => void): () => void {
  listeners.add(onTick);
  if (!timer) {
    timer = setInterval(() => {
      now = Date.now();
      for (const l of listeners) l();
    }, 30_000);
  }
  return () => {
    listeners.delete(onTick);
    if (listeners.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** useNow returns the current time in milliseconds, refreshed every 30 s. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, () => now);
}

const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/** formatRelative says how long ago (or from now) t is, relative to nowMs. */
export function formatRelative(t: Date, nowMs: number): string {
  const seconds = Math.round((t.getTime() - nowMs) / 1000);
  if (Math.abs(seconds) < 45) return "just now";
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return relative.format(seconds, "second");
}

/** formatExact is the full local date and time, with its time zone. */
export function formatExact(t: Date): string {
  return t.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "long" });
}

/** parseTime returns the Date of an RFC 3339 timestamp, or null when there is none. */
export function parseTime(ts: string | null | undefined): Date | null {
  if (!ts) return null;
  const d = new Date(ts);
  // protojson writes the zero Timestamp as 1970-01-01T00:00:00Z: treat it as unset.
  return Number.isNaN(d.getTime()) || d.getTime() <= 0 ? null : d;
}

/** RelativeTime shows "3 minutes ago", with the exact time in its tooltip. */
export function RelativeTime({ value }: { value: string | null | undefined }) {
  const nowMs = useNow();
  const t = parseTime(value);
  if (!t) return <span className="muted">—</span>;
  const exact = formatExact(t);
  return (
    <time dateTime={t.toISOString()} title={exact}>
      {formatRelative(t, nowMs)}
    </time>
  );
}
