import type { Store } from "../api/client";
import { useDeleteStore } from "../api/queries";
import { errorMessage } from "../session/session";
import { ConfirmDialog } from "./ConfirmDialog";

/**
 * DeleteStoreDialog asks to confirm the deletion of store, naming it, and
 * deletes it on confirmation. onDone is called once it is closed, either way.
 */
export function DeleteStoreDialog({ store, onDone }: { store: Store; onDone: () => void }) {
  const del = useDeleteStore();
  const name = store.displayName || store.id || "this store";
  return (
    <ConfirmDialog
      title={`Delete “${name}”?`}
      confirmLabel="Delete store"
      danger
      busy={del.isPending}
      error={del.error ? errorMessage(del.error) : null}
      onCancel={onDone}
      onConfirm={() => {
        if (store.id) del.mutate(store.id, { onSuccess: onDone });
      }}
    >
      <p>
        This removes the store <strong>{name}</strong> (<code>{store.id}</code>) and everything it owns: its
        namespace <code>{store.namespace || `store-${store.id}`}</code>, databases, volumes and secrets. It cannot be undone.
      </p>
    </ConfirmDialog>
  );
}
