import type { WatchState } from "../api/watch";

/**
 * WatchStatus says whether the store list updates live. It is a polite live
 * region, so that losing and regaining the connection is announced.
 */
export function WatchStatus({ state }: { state: WatchState }) {
  let text: string;
  switch (state.status) {
    case "live":
      text = "Live updates on";
      break;
    case "connecting":
      text = "Connecting…";
      break;
    case "reconnecting":
      text = `Live updates interrupted, reconnecting in ${Math.max(1, Math.round(state.retryInMs / 1000))} s`;
      break;
  }
  return (
    <p className={`watch-status watch-${state.status}`} role="status" title={state.status === "reconnecting" ? state.error?.message : undefined}>
      <span className="watch-dot" aria-hidden="true" />
      {text}
    </p>
  );
}
