import { useId, useState, type FormEvent } from "react";
import type { CreatedToken, Token } from "../api/client";
import { useCreateToken, useRevokeToken, useTokens } from "../api/queries";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { RelativeTime } from "../components/RelativeTime";
import { links, navigate } from "../router";
import { errorMessage, useSession } from "../session/session";

/** Lifetimes offered for a new token; 0 is the longest the api allows (90 days by default). */
const lifetimes = [
  { seconds: 0, label: "Longest allowed" },
  { seconds: 30 * 86400, label: "30 days" },
  { seconds: 7 * 86400, label: "7 days" },
  { seconds: 86400, label: "1 day" },
] as const;

const kindLabel: Record<string, string> = { TOKEN_KIND_API: "API", TOKEN_KIND_SESSION: "Sign-in session" };

/**
 * TokensPage lists the bearer tokens of the signed-in user (an admin: of the
 * user named in the URL), with their expiry and last use, issues API tokens
 * and revokes any of them at once.
 */
export function TokensPage({ user: owner }: { user: string }) {
  const { user } = useSession();
  const tokens = useTokens(owner);
  const [revoking, setRevoking] = useState<Token | null>(null);
  const revoke = useRevokeToken();
  const [lookup, setLookup] = useState(owner);
  const ids = { user: useId() };
  const whose = owner && owner !== user.name ? owner : "";

  function show(e: FormEvent) {
    e.preventDefault();
    navigate(links.tokens(lookup.trim()));
  }

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>{whose ? `Tokens of ${whose}` : "Your tokens"}</h1>
      </div>
      {user.admin && (
        <form className="card filters" onSubmit={show} aria-label="Show a user's tokens">
          <div className="fields">
            <div className="field">
              <label htmlFor={ids.user}>User</label>
              <input id={ids.user} name="user" value={lookup} placeholder={user.name} onChange={(e) => setLookup(e.target.value)} autoComplete="off" />
            </div>
            <div className="field field-submit">
              <button type="submit" className="button">
                Show tokens
              </button>
            </div>
          </div>
        </form>
      )}
      <CreateTokenForm owner={whose} />
      {tokens.isPending && <p role="status">Loading tokens…</p>}
      {tokens.isError && (
        <p className="form-error" role="alert">
          Could not list the tokens: {errorMessage(tokens.error)}
        </p>
      )}
      {tokens.data && tokens.data.length === 0 && <p>No tokens.</p>}
      {tokens.data && tokens.data.length > 0 && (
        <div className="table-wrap">
          <table className="store-table" aria-label="Tokens">
            <thead>
              <tr>
                <th scope="col">Description</th>
                <th scope="col">ID</th>
                <th scope="col">Kind</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id} data-token-id={t.id}>
                  <th scope="row" data-label="Description">
                    {t.description || <span className="muted">No description</span>}
                  </th>
                  <td data-label="ID">
                    <code>{t.id}</code>
                  </td>
                  <td data-label="Kind">{kindLabel[t.kind ?? ""] ?? t.kind}</td>
                  <td data-label="Created">
                    <RelativeTime value={t.createTime} />
                  </td>
                  <td data-label="Expires">
                    <RelativeTime value={t.expireTime} />
                  </td>
                  <td data-label="Last used">
                    {t.lastUseTime ? <RelativeTime value={t.lastUseTime} /> : <span className="muted">Never</span>}
                  </td>
                  <td data-label="Actions">
                    <button
                      type="button"
                      className="button button-small button-danger-outline"
                      aria-label={`Revoke token ${t.id}`}
                      onClick={() => {
                        revoke.reset();
                        setRevoking(t);
                      }}
                    >
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoking && (
        <ConfirmDialog
          title={`Revoke token ${revoking.id}?`}
          confirmLabel="Revoke"
          danger
          busy={revoke.isPending}
          error={revoke.isError ? errorMessage(revoke.error) : null}
          onCancel={() => setRevoking(null)}
          onConfirm={() => revoke.mutate(revoking.id ?? "", { onSuccess: () => setRevoking(null) })}
        >
          <p>
            Its next call is refused. Anything using it ({revoking.description || "no description"}) stops working at
            once.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}

/** CreateTokenForm issues an API token for owner (empty: the caller) and shows it once. */
function CreateTokenForm({ owner }: { owner: string }) {
  const create = useCreateToken();
  const [description, setDescription] = useState("");
  const [ttl, setTtl] = useState(0);
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const ids = { title: useId(), description: useId(), ttl: useId() };

  function submit(e: FormEvent) {
    e.preventDefault();
    setCreated(null);
    create.mutate(
      { user: owner, description: description.trim(), ttlSeconds: ttl },
      {
        onSuccess: (resp) => {
          setCreated(resp);
          setDescription("");
        },
      },
    );
  }

  return (
    <form className="card create-form" onSubmit={submit} aria-labelledby={ids.title}>
      <h2 id={ids.title}>New API token{owner && ` for ${owner}`}</h2>
      {create.isError && (
        <p className="form-error" role="alert">
          {errorMessage(create.error)}
        </p>
      )}
      <div className="fields">
        <div className="field">
          <label htmlFor={ids.description}>Description</label>
          <input
            id={ids.description}
            name="description"
            value={description}
            maxLength={200}
            placeholder="ci, laptop…"
            onChange={(e) => setDescription(e.target.value)}
            autoComplete="off"
          />
        </div>
        <div className="field">
          <label htmlFor={ids.ttl}>Expires after</label>
          <select id={ids.ttl} name="ttl" value={ttl} onChange={(e) => setTtl(Number(e.target.value))}>
            {lifetimes.map((l) => (
              <option key={l.seconds} value={l.seconds}>
                {l.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field field-submit">
          <button type="submit" className="button button-primary" disabled={create.isPending}>
            {create.isPending ? "Creating…" : "Create token"}
          </button>
        </div>
      </div>
      {created && (
        <div role="status" className="new-token">
          <p>
            Token {created.info?.id} for <strong>{created.user?.name}</strong>
            {created.user?.signIn && ` (signs in with ${created.user.oidcIssuer})`}, expires{" "}
            <RelativeTime value={created.info?.expireTime} />. Copy it now: it is shown only once.
          </p>
          <code aria-label="New token">{created.token}</code>
        </div>
      )}
    </form>
  );
}
