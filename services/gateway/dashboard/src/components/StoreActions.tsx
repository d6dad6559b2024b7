import { useState } from "react";
import type { Store } from "../api/client";
import { useRetryStore } from "../api/queries";
import { errorMessage } from "../session/session";
import { DeleteStoreDialog } from "./DeleteStoreDialog";

/** canDelete tells whether a store can still be deleted. */
export function canDelete(s: Store): boolean {
  return s.phase !== "PHASE_DELETING" && s.phase !== "PHASE_DELETED";
}

/**
 * StoreActions are the buttons for one store: Retry when it FAILED, Delete
 * unless it is already going away. Their accessible names include the store's
 * name, so that a list of them reads well ("Delete Corner Shop").
 */
export function StoreActions({ store }: { store: Store }) {
  const retry = useRetryStore();
  const [confirming, setConfirming] = useState(false);
  const name = store.displayName || store.id || "";
  return (
    <div className="actions">
      {store.phase === "PHASE_FAILED" && (
        <button
          type="button"
          className="button"
          aria-label={`Retry ${name}`}
          disabled={retry.isPending}
          onClick={() => store.id && retry.mutate(store.id)}
        >
          {retry.isPending ? "Retrying…" : "Retry"}
        </button>
      )}
      {canDelete(store) && (
        <button type="button" className="button button-danger-outline" aria-label={`Delete ${name}`} onClick={() => setConfirming(true)}>
          Delete
        </button>
      )}
      {retry.error && (
        <p className="field-error" role="alert">
          {errorMessage(retry.error)}
        </p>
      )}
      {confirming && <DeleteStoreDialog store={store} onDone={() => setConfirming(false)} />}
    </div>
  );
}
