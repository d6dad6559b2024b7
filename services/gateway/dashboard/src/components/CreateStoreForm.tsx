import { useId, useRef, useState, type FormEvent } from "react";
import { ApiError, type Engine, type Store } from "../api/client";
import { useCreateStore } from "../api/queries";
import { engineChoices } from "../labels";
import { errorMessage, fieldMessage } from "../session/session";

/**
 * CreateStoreForm asks for a name and an engine and creates the store. The
 * server validates: its message shows next to the field it names, or above
 * the form when it names none (such as a full quota). onCreated receives the
 * new store, which is already in the list as PROVISIONING.
 */
export function CreateStoreForm({ onCreated }: { onCreated?: (store: Store) => void }) {
  const create = useCreateStore();
  const [name, setName] = useState("");
  const [engine, setEngine] = useState<Engine>("ENGINE_WOOCOMMERCE");
  const [created, setCreated] = useState<string | null>(null);
  const nameRef = useRef<HTMLInputElement>(null);
  const engineRef = useRef<HTMLSelectElement>(null);
  const ids = { name: useId(), nameError: useId(), engine: useId(), engineError: useId(), hint: useId() };

  const error = create.error;
  const field = error instanceof ApiError ? error.field : undefined;
  const nameError = error instanceof ApiError && field?.endsWith("display_name") ? fieldMessage(error, "Store name") : null;
  const engineError = error instanceof ApiError && field?.endsWith("engine") ? fieldMessage(error, "Engine") : null;
  const formError = error && !nameError && !engineError ? errorMessage(error) : null;

  function submit(e: FormEvent) {
    e.preventDefault();
    setCreated(null);
    create.mutate(
      { displayName: name, engine },
      {
        onSuccess: (store) => {
          setName("");
          setCreated(store.displayName ?? name);
          onCreated?.(store);
        },
        onError: (err) => {
          const f = err instanceof ApiError ? err.field : undefined;
          if (f?.endsWith("engine")) engineRef.current?.focus();
          else if (f?.endsWith("display_name")) nameRef.current?.focus();
        },
      },
    );
  }

  return (
    <form className="card create-form" onSubmit={submit} noValidate aria-labelledby={`${ids.name}-title`}>
      <h2 id={`${ids.name}-title`}>New store</h2>
      {formError && (
        <p className="form-error" role="alert">
          {formError}
        </p>
      )}
      <div className="fields">
        <div className="field">
          <label htmlFor={ids.name}>Store name</label>
          <input
            id={ids.name}
            ref={nameRef}
            name="displayName"
            value={name}
            onChange={(e) => setName(e.target.value)}
            autoComplete="off"
            aria-required="true"
            aria-invalid={nameError ? true : undefined}
            aria-describedby={nameError ? `${ids.nameError} ${ids.hint}` : ids.hint}
          />
          <p id={ids.hint} className="hint">
            1 to 63 characters, shown in the dashboard.
          </p>
          {nameError && (
            <p id={ids.nameError} className="field-error">
              {nameError}
            </p>
          )}
        </div>
        <div className="field">
          <label htmlFor={ids.engine}>Engine</label>
          <select
            id={ids.engine}
            ref={engineRef}
            name="engine"
            value={engine}
            onChange={(e) => setEngine(e.target.value as Engine)}
            aria-invalid={engineError ? true : undefined}
            aria-describedby={engineError ? ids.engineError : undefined}
          >
            {engineChoices.map((c) => (
              <option key={c.value} value={c.value}>
                {c.label} ({c.description})
              </option>
            ))}
          </select>
          {engineError && (
            <p id={ids.engineError} className="field-error">
              {engineError}
            </p>
          )}
        </div>
        <div className="field field-submit">
          <button type="submit" className="button button-primary" disabled={create.isPending}>
            {create.isPending ? "Creating…" : "Create store"}
          </button>
        </div>
      </div>
      <p role="status" className="form-status">
        {created ? `Store “${created}” created: it is provisioning.` : ""}
      </p>
    </form>
  );
}
