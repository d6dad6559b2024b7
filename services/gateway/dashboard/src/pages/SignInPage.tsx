import { useId, useRef, useState, type FormEvent } from "react";
import { useAuthConfig } from "../api/queries";
import { errorMessage, useSessionState } from "../session/session";

/**
 * SignInPage asks for an API token and checks it with GET /v1/users/me. When
 * the gateway offers OpenID Connect, it also offers "Sign in with <provider>",
 * which leaves for the identity provider and comes back signed in, to the same
 * route. Either token stays in this tab's sessionStorage only.
 */
export function SignInPage() {
  const { signIn, notice, signInError, signInWithProvider } = useSessionState();
  const oidc = useAuthConfig().data?.oidc;
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const inputRef = useRef<HTMLInputElement>(null);
  const ids = { token: useId(), error: useId(), hint: useId() };

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(token);
    } catch (err) {
      setError(errorMessage(err));
      inputRef.current?.focus();
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="signin">
      <div className="card signin-card">
        <h1>Sign in to storeprov</h1>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        {signInError && (
          <p className="form-error" role="alert">
            {signInError}
          </p>
        )}
        <form className="signin-form" onSubmit={submit} noValidate>
          <div className="field">
            <label htmlFor={ids.token}>API token</label>
            <input
              id={ids.token}
              ref={inputRef}
              type="password"
              name="token"
              value={token}
              onChange={(e) => setToken(e.target.value)}
              autoComplete="off"
              spellCheck={false}
              autoFocus
              aria-required="true"
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? `${ids.error} ${ids.hint}` : ids.hint}
            />
            <p id={ids.hint} className="hint">
              <code>make dev</code> writes an admin token to <code>.cache/dev/token</code>; <code>storectl token create</code> issues
              more. The token is kept only in this browser tab.
            </p>
            {error && (
              <p id={ids.error} className="field-error" role="alert">
                {error}
              </p>
            )}
          </div>
          <button type="submit" className="button button-primary" disabled={busy}>
            {busy ? "Checking…" : "Sign in"}
          </button>
        </form>
        {oidc?.enabled && (
          <>
            <p className="signin-or">or</p>
            <button type="button" className="button" onClick={() => signInWithProvider(oidc.loginUrl)}>
              Sign in with {oidc.providerName}
            </button>
          </>
        )}
      </div>
    </main>
  );
}
