import { useId, useState, type FormEvent } from "react";
import type { AuditQuery, Store } from "../api/client";
import { useAuditEntries, useStores } from "../api/queries";
import { RelativeTime } from "../components/RelativeTime";
import { actionLabel, auditActions } from "../labels";
import { links, navigate } from "../router";
import { errorMessage } from "../session/session";

/** The filters of the Activity page, as they appear in its URL. */
const filterNames = ["actor", "action", "storeId", "startTime", "endTime"] as const;
type Filters = Record<(typeof filterNames)[number], string>;

function filtersOf(params: URLSearchParams): Filters {
  const f = {} as Filters;
  for (const n of filterNames) f[n] = params.get(n) ?? "";
  return f;
}

/** toLocalInput turns an RFC 3339 time into a datetime-local value in the browser's zone. */
export function toLocalInput(rfc3339: string): string {
  const d = new Date(rfc3339);
  if (!rfc3339 || Number.isNaN(d.getTime())) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** fromLocalInput turns a datetime-local value into RFC 3339 (UTC). */
export function fromLocalInput(value: string): string {
  const d = new Date(value);
  return value && !Number.isNaN(d.getTime()) ? d.toISOString() : "";
}

/**
 * ActivityPage is the audit log with filters by actor, action, store and time
 * range. The filters live in the URL, so a filtered view can be shared.
 */
export function ActivityPage({ params }: { params: URLSearchParams }) {
  const applied = filtersOf(params);
  const [draft, setDraft] = useState<Filters>(applied);
  const key = params.toString();
  // Follow the URL when it changes (back button, a link from a store): the
  // draft is reset while rendering, not in an effect after it.
  const [draftOf, setDraftOf] = useState(key);
  if (draftOf !== key) {
    setDraftOf(key);
    setDraft(applied);
  }

  const query: AuditQuery = {};
  for (const n of filterNames) if (applied[n]) query[n] = applied[n];
  const audit = useAuditEntries(query);
  const stores = useStores();
  const names = new Map((stores.data ?? []).map((s: Store) => [s.id, s.displayName]));
  const entries = audit.data?.pages.flatMap((p) => p.entries ?? []) ?? [];
  const ids = { actor: useId(), action: useId(), store: useId(), from: useId(), to: useId(), stores: useId() };

  function submit(e: FormEvent) {
    e.preventDefault();
    navigate(links.activity(draft));
  }
  const set = (n: keyof Filters) => (e: { target: { value: string } }) => setDraft({ ...draft, [n]: e.target.value });
  const filtered = filterNames.some((n) => applied[n]);

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Activity</h1>
      </div>
      <form className="card filters" onSubmit={submit} aria-label="Filter activity">
        <div className="fields">
          <div className="field">
            <label htmlFor={ids.actor}>Actor</label>
            <input id={ids.actor} name="actor" value={draft.actor} onChange={set("actor")} autoComplete="off" />
          </div>
          <div className="field">
            <label htmlFor={ids.action}>Action</label>
            <select id={ids.action} name="action" value={draft.action} onChange={set("action")}>
              <option value="">Any action</option>
              {auditActions.map((a) => (
                <option key={a.value} value={a.value}>
                  {a.label} ({a.value})
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor={ids.store}>Store ID</label>
            <input id={ids.store} name="storeId" value={draft.storeId} onChange={set("storeId")} list={ids.stores} autoComplete="off" />
            <datalist id={ids.stores}>
              {(stores.data ?? []).map((s) => (
                <option key={s.id} value={s.id}>
                  {s.displayName}
                </option>
              ))}
            </datalist>
          </div>
          <div className="field">
            <label htmlFor={ids.from}>From</label>
            <input
              id={ids.from}
              type="datetime-local"
              name="startTime"
              value={toLocalInput(draft.startTime)}
              onChange={(e) => setDraft({ ...draft, startTime: fromLocalInput(e.target.value) })}
            />
          </div>
          <div className="field">
            <label htmlFor={ids.to}>To</label>
            <input
              id={ids.to}
              type="datetime-local"
              name="endTime"
              value={toLocalInput(draft.endTime)}
              onChange={(e) => setDraft({ ...draft, endTime: fromLocalInput(e.target.value) })}
            />
          </div>
          <div className="field field-submit">
            <button type="submit" className="button button-primary">
              Apply filters
            </button>
            {filtered && (
              <a className="button" href={links.activity()}>
                Clear
              </a>
            )}
          </div>
        </div>
      </form>
      <section className="card" aria-labelledby="log-title">
        <h2 id="log-title">Audit log{filtered ? " (filtered)" : ""}</h2>
        {audit.isPending ? (
          <p role="status" className="loading">
            Loading activity…
          </p>
        ) : audit.isError ? (
          <div role="alert" className="form-error">
            <p>Could not load the activity: {errorMessage(audit.error)}</p>
            <button type="button" className="button" onClick={() => void audit.refetch()}>
              Try again
            </button>
          </div>
        ) : entries.length === 0 ? (
          <p className="empty">{filtered ? "No activity matches these filters." : "No activity yet."}</p>
        ) : (
          <>
            <div className="table-wrap">
              <table className="audit-table" aria-label="Audit log, oldest first">
                <thead>
                  <tr>
                    <th scope="col">Time</th>
                    <th scope="col">Action</th>
                    <th scope="col">Store</th>
                    <th scope="col">Actor</th>
                    <th scope="col">Detail</th>
                  </tr>
                </thead>
                <tbody>
                  {entries.map((e) => (
                    <tr key={e.id} data-action={e.action}>
                      <td data-label="Time">
                        <RelativeTime value={e.time} />
                      </td>
                      <td data-label="Action">{actionLabel(e.action)}</td>
                      <td data-label="Store">
                        {e.storeId ? <a href={links.store(e.storeId)}>{names.get(e.storeId) || e.storeId}</a> : "—"}
                        {e.storeOwner && <span className="muted"> · {e.storeOwner}</span>}
                      </td>
                      <td data-label="Actor">{e.actor}</td>
                      <td data-label="Detail">{e.detail}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {audit.hasNextPage && (
              <button type="button" className="button" onClick={() => void audit.fetchNextPage()} disabled={audit.isFetchingNextPage}>
                {audit.isFetchingNextPage ? "Loading…" : "Load more"}
              </button>
            )}
          </>
        )}
      </section>
    </>
  );
}
