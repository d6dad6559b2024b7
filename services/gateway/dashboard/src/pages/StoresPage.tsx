import { useState } from "react";
import { useStores } from "../api/queries";
import { CreateStoreForm } from "../components/CreateStoreForm";
import { StoreTable } from "../components/StoreTable";
import { errorMessage, useSession } from "../session/session";

/**
 * StoresPage lists the caller's stores (an admin's: everyone's), live, with
 * the form that creates one. Deleted stores are hidden unless asked for.
 */
export function StoresPage() {
  const { user } = useSession();
  const stores = useStores();
  const [showDeleted, setShowDeleted] = useState(false);
  const all = stores.data ?? [];
  const visible = showDeleted ? all : all.filter((s) => s.phase !== "PHASE_DELETED");
  const hiddenCount = all.length - visible.length;

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Stores</h1>
      </div>
      <CreateStoreForm />
      <section className="card" aria-labelledby="store-list-title">
        <div className="section-head">
          <h2 id="store-list-title">{user.admin ? "All stores" : "Your stores"}</h2>
          <label className="checkbox">
            <input type="checkbox" checked={showDeleted} onChange={(e) => setShowDeleted(e.target.checked)} />
            Show deleted stores{hiddenCount > 0 && !showDeleted ? ` (${hiddenCount})` : ""}
          </label>
        </div>
        {stores.isPending ? (
          <p role="status" className="loading">
            Loading stores…
          </p>
        ) : stores.isError ? (
          <div className="form-error" role="alert">
            <p>Could not load the stores: {errorMessage(stores.error)}</p>
            <button type="button" className="button" onClick={() => void stores.refetch()}>
              Try again
            </button>
          </div>
        ) : visible.length === 0 ? (
          <p className="empty">
            {all.length === 0
              ? "No stores yet. Create your first store with the form above."
              : "No stores to show. Check “Show deleted stores” to see deleted ones."}
          </p>
        ) : (
          <StoreTable stores={visible} showOwner={user.admin ?? false} />
        )}
      </section>
    </>
  );
}
