import { useId, useRef, useState, type FormEvent } from "react";
import { ApiError, type Store } from "../api/client";
import { useUpgradeStore } from "../api/queries";
import { errorMessage, fieldMessage } from "../session/session";
import { FailureReason } from "./StoreTable";

/**
 * UpgradeStoreForm moves a READY store to another chart version, or to the
 * newest when the field is left empty. It stays in place while the store
 * provisions its new generation, with the button disabled, so that focus and
 * the status message are not lost. A READY store that carries a failure
 * reason had its last upgrade rolled back or refused: the form says why.
 */
export function UpgradeStoreForm({ store }: { store: Store }) {
  const upgrade = useUpgradeStore();
  const [version, setVersion] = useState("");
  const [requested, setRequested] = useState<string | null>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const ids = { title: useId(), version: useId(), hint: useId(), error: useId() };
  const ready = store.phase === "PHASE_READY";

  const error = upgrade.error;
  const versionError = error instanceof ApiError && error.field?.endsWith("chart_version") ? fieldMessage(error, "Chart version") : null;
  const formError = error && !versionError ? errorMessage(error) : null;

  function submit(e: FormEvent) {
    e.preventDefault();
    if (!store.id) return;
    setRequested(null);
    const chartVersion = version.trim();
    upgrade.mutate(
      { id: store.id, ...(chartVersion && { chartVersion }) },
      {
        onSuccess: () => {
          setVersion("");
          setRequested(chartVersion ? `Upgrade to chart ${chartVersion} requested: the store is provisioning.` : "Upgrade to the newest chart requested: the store is provisioning.");
        },
        onError: () => inputRef.current?.focus(),
      },
    );
  }

  return (
    <form className="card" onSubmit={submit} noValidate aria-labelledby={ids.title}>
      <h2 id={ids.title}>Upgrade</h2>
      {ready && store.failureReason && (
        <div className="notice">
          <p>The last upgrade did not complete; the store still runs its previous revision.</p>
          <FailureReason store={store} />
        </div>
      )}
      {formError && (
        <p className="form-error" role="alert">
          {formError}
        </p>
      )}
      <div className="fields">
        <div className="field">
          <label htmlFor={ids.version}>Chart version</label>
          <input
            id={ids.version}
            ref={inputRef}
            name="chartVersion"
            value={version}
            onChange={(e) => setVersion(e.target.value)}
            autoComplete="off"
            spellCheck={false}
            aria-invalid={versionError ? true : undefined}
            aria-describedby={versionError ? `${ids.error} ${ids.hint}` : ids.hint}
          />
          <p id={ids.hint} className="hint">
            {store.chartVersion ? `Now on chart ${store.chartVersion}. ` : ""}Leave empty for the newest version.{" "}
            {ready ? "The store keeps serving while it upgrades; if the new version does not become ready, it is rolled back." : "Available once the store is READY."}
          </p>
          {versionError && (
            <p id={ids.error} className="field-error">
              {versionError}
            </p>
          )}
        </div>
        <div className="field field-submit">
          <button type="submit" className="button" disabled={!ready || upgrade.isPending}>
            {upgrade.isPending ? "Upgrading…" : "Upgrade store"}
          </button>
        </div>
      </div>
      <p role="status" className="form-status">
        {requested ?? ""}
      </p>
    </form>
  );
}
