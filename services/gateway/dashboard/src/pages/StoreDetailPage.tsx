import { useEffect, useState } from "react";
import { ApiError, Code, type AuditEntry, type Phase, type Store } from "../api/client";
import { useAuditEntries, useStore } from "../api/queries";
import { AuditTimeline } from "../components/AuditTimeline";
import { CopyCommand } from "../components/CopyCommand";
import { PhaseBadge } from "../components/PhaseBadge";
import { parseTime, RelativeTime } from "../components/RelativeTime";
import { StoreActions } from "../components/StoreActions";
import { UpgradeStoreForm } from "../components/UpgradeStoreForm";
import { FailureReason, StoreUrl } from "../components/StoreTable";
import { engineLabel } from "../labels";
import { links } from "../router";
import { errorMessage } from "../session/session";

/** adminPasswordCommand prints the admin password of the store with this id. */
export function adminPasswordCommand(id: string): string {
  return `kubectl -n store-${id} get secret store-admin -o jsonpath='{.data.password}' | base64 -d`;
}

/**
 * StoreDetailPage shows one store: status, URL, where it runs, how to read its
 * admin credentials (the dashboard never reads them itself) and its history.
 */
export function StoreDetailPage({ id }: { id: string }) {
  const store = useStore(id);
  const s = store.data;

  useEffect(() => {
    if (s?.displayName) document.title = `${s.displayName} · storeprov`;
  }, [s?.displayName]);

  if (!s) {
    if (store.isError) {
      const notFound = store.error instanceof ApiError && store.error.code === Code.NotFound;
      return (
        <>
          <h1 tabIndex={-1}>{notFound ? "Store not found" : "Could not load the store"}</h1>
          <p role="alert" className="form-error">
            {notFound ? `There is no store ${id} that you can see.` : errorMessage(store.error)}
          </p>
          <p>
            <a href={links.stores()}>Back to stores</a>
          </p>
        </>
      );
    }
    return (
      <>
        <h1 tabIndex={-1}>Store {id}</h1>
        <p role="status" className="loading">
          Loading the store…
        </p>
      </>
    );
  }

  const namespace = s.namespace || `store-${id}`;
  return (
    <>
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <a href={links.stores()}>Stores</a> <span aria-hidden="true">/</span> <span aria-current="page">{s.displayName}</span>
      </nav>
      <div className="page-head">
        <h1 tabIndex={-1}>{s.displayName || id}</h1>
        <PhaseBadge phase={s.phase} />
        <StoreActions store={s} />
      </div>
      {s.phase === "PHASE_FAILED" && (
        <div className="card failure-card">
          <h2>Why it failed</h2>
          <FailureReason store={s} />
          <p className="hint">Retry provisions the store again; what was already created is reused.</p>
        </div>
      )}
      <section className="card" aria-labelledby="details-title">
        <h2 id="details-title">Details</h2>
        <dl className="details">
          <dt>URL</dt>
          <dd>
            <StoreUrl store={s} />
          </dd>
          <dt>Engine</dt>
          <dd>{engineLabel(s.engine)}</dd>
          <dt>ID</dt>
          <dd>
            <code>{s.id}</code>
          </dd>
          <dt>Owner</dt>
          <dd>{s.owner}</dd>
          <dt>Namespace</dt>
          <dd>
            <code>{namespace}</code>
          </dd>
          <dt>Chart version</dt>
          <dd>{s.chartVersion || <span className="muted">not installed yet</span>}</dd>
          <dt>Order check</dt>
          <dd>
            <OrderCheck store={s} />
          </dd>
          <dt>Generation</dt>
          <dd>
            {s.generation ?? "—"}
            {s.observedGeneration && s.observedGeneration !== s.generation && (
              <span className="muted"> (platform has acted on {s.observedGeneration})</span>
            )}
          </dd>
          <dt>Created</dt>
          <dd>
            <RelativeTime value={s.createTime} />
          </dd>
          <dt>Updated</dt>
          <dd>
            <RelativeTime value={s.updateTime} />
          </dd>
        </dl>
      </section>
      {(s.phase === "PHASE_READY" || s.phase === "PHASE_PROVISIONING") && <UpgradeStoreForm store={s} />}
      <section className="card" aria-labelledby="credentials-title">
        <h2 id="credentials-title">Admin credentials</h2>
        <p>
          The store's admin password is in the Secret <code>store-admin</code> in namespace <code>{`store-${id}`}</code>. The
          dashboard never reads it. With access to the cluster, print it with:
        </p>
        <CopyCommand command={adminPasswordCommand(id)} />
      </section>
      <StoreHistory store={s} />
    </>
  );
}

/**
 * OrderCheck says when the store's order check (a test order the platform
 * places and cleans up) last passed, or that none has.
 */
export function OrderCheck({ store }: { store: Pick<Store, "orderCheckTime"> }) {
  if (!parseTime(store.orderCheckTime)) return <span className="muted">not run</span>;
  return (
    <>
      passed <RelativeTime value={store.orderCheckTime} />
    </>
  );
}

/** The audit actions that may record how a store came to be in each phase. */
const actionsOfPhase: Partial<Record<Phase, string[]>> = {
  PHASE_PROVISIONING: ["create", "retry", "upgrade"],
  // "failure" too: a READY store whose upgrade was rolled back; "repaired":
  // a READY store whose drift a resync repaired.
  PHASE_READY: ["ready", "failure", "repaired"],
  PHASE_FAILED: ["failure"],
  PHASE_DELETING: ["delete"],
  PHASE_DELETED: ["deleted"],
};

/** How often, and for how long after the store changed, a lagging history asks again. */
const historyPollMs = 2000;
const historyPollForMs = 60_000;

/**
 * historyLags is true when the newest audit entry does not yet record the
 * store's phase. The audit service writes the log from events, a moment after
 * the store changed, so the history can be behind the status the watch shows.
 */
export function historyLags(store: Pick<Store, "phase" | "updateTime">, entries: AuditEntry[], now = Date.now()): boolean {
  const want = store.phase && actionsOfPhase[store.phase];
  if (!want) return false;
  const changed = Date.parse(store.updateTime ?? "");
  if (Number.isNaN(changed) || now - changed > historyPollForMs) return false;
  const newest = entries[entries.length - 1];
  return !newest?.action || !want.includes(newest.action);
}

function StoreHistory({ store }: { store: Store }) {
  const id = store.id ?? "";
  const [lagging, setLagging] = useState(false);
  const audit = useAuditEntries({ storeId: id }, { refetchEveryMs: lagging ? historyPollMs : false });
  const entries = audit.data?.pages.flatMap((p) => p.entries ?? []) ?? [];
  const complete = audit.isSuccess && !audit.hasNextPage;
  const { data, dataUpdatedAt } = audit;
  // Decided again after every answer (even an unchanged one), so that polling
  // stops once the log caught up or the store has not changed for a while;
  // while rendering, not in an effect after it.
  const [decided, setDecided] = useState<{ complete: boolean; store: Store; data: typeof data; dataUpdatedAt: number }>();
  if (
    decided?.complete !== complete ||
    decided.store !== store ||
    decided.data !== data ||
    decided.dataUpdatedAt !== dataUpdatedAt
  ) {
    setDecided({ complete, store, data, dataUpdatedAt });
    setLagging(complete && historyLags(store, entries));
  }
  return (
    <section className="card" aria-labelledby="history-title">
      <div className="section-head">
        <h2 id="history-title">History</h2>
        <a href={links.activity({ storeId: id })}>Open in Activity</a>
      </div>
      {audit.isPending ? (
        <p role="status" className="loading">
          Loading history…
        </p>
      ) : audit.isError ? (
        <p role="alert" className="form-error">
          Could not load the history: {errorMessage(audit.error)}
        </p>
      ) : entries.length === 0 ? (
        <p className="empty">Nothing recorded yet.</p>
      ) : (
        <>
          <AuditTimeline entries={entries} />
          {audit.hasNextPage && (
            <button type="button" className="button" onClick={() => void audit.fetchNextPage()} disabled={audit.isFetchingNextPage}>
              {audit.isFetchingNextPage ? "Loading…" : "Show more"}
            </button>
          )}
        </>
      )}
    </section>
  );
}
