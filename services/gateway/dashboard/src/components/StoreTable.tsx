import type { Store } from "../api/client";
import { engineLabel } from "../labels";
import { links } from "../router";
import { PhaseBadge } from "./PhaseBadge";
import { RelativeTime } from "./RelativeTime";
import { StoreActions } from "./StoreActions";

/** StoreUrl links to a READY store; other phases have no usable URL yet. */
export function StoreUrl({ store }: { store: Store }) {
  if (store.phase === "PHASE_READY" && store.url) {
    return (
      <a href={store.url} target="_blank" rel="noreferrer noopener" className="store-url">
        {store.url.replace(/^https?:\/\//, "")}
        <span className="visually-hidden"> (opens in a new tab)</span>
      </a>
    );
  }
  return <span className="muted">{store.phase === "PHASE_PROVISIONING" ? "Not ready yet" : "—"}</span>;
}

/** FailureReason shows why a store failed: the reason code and the message. */
export function FailureReason({ store }: { store: Store }) {
  if (!store.failureReason && !store.failureMessage) return null;
  return (
    <p className="failure">
      {store.failureReason && <strong>{store.failureReason}</strong>}
      {store.failureReason && store.failureMessage && ": "}
      {store.failureMessage}
    </p>
  );
}

/**
 * StoreTable lists stores: name (a link to the store), engine, phase, URL,
 * times and actions. Each row has data-store-id; on narrow screens rows
 * become cards (CSS only).
 */
export function StoreTable({ stores, showOwner }: { stores: Store[]; showOwner?: boolean }) {
  return (
    <div className="table-wrap">
      <table className="store-table" aria-label="Stores">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Engine</th>
            <th scope="col">Status</th>
            <th scope="col">URL</th>
            {showOwner && <th scope="col">Owner</th>}
            <th scope="col">Created</th>
            <th scope="col">Updated</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {stores.map((s) => (
            <tr key={s.id} data-store-id={s.id} data-phase={s.phase}>
              <th scope="row" data-label="Name">
                <a href={links.store(s.id ?? "")}>{s.displayName || s.id}</a>
              </th>
              <td data-label="Engine">{engineLabel(s.engine)}</td>
              <td data-label="Status">
                <div>
                  <PhaseBadge phase={s.phase} />
                  {s.phase === "PHASE_FAILED" && <FailureReason store={s} />}
                </div>
              </td>
              <td data-label="URL">
                <StoreUrl store={s} />
              </td>
              {showOwner && <td data-label="Owner">{s.owner}</td>}
              <td data-label="Created" className="nowrap">
                <RelativeTime value={s.createTime} />
              </td>
              <td data-label="Updated" className="nowrap">
                <RelativeTime value={s.updateTime} />
              </td>
              <td data-label="Actions">
                <StoreActions store={s} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
