import { useState } from 'preact/hooks';
import { api, SESSION } from '../api.js';

export function SignIn({ onSignedIn, notice }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api('POST', SESSION, { body: { username, password } }));
    } catch (err) {
      setError(err.status === 401 ? 'Wrong user name or password.' : err.message);
      setPassword('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="signin-page">
      <form class="signin" onSubmit={submit}>
        <div class="signin-brand">
          <img src="/static/images/favicon.svg" alt="" width="40" height="40" />
          <div>
            <h1>truckx</h1>
            <p class="muted">Fleet console</p>
          </div>
        </div>
        {notice ? <div class="info-box">{notice}</div> : null}
        <label>
          User name
          <input name="username" autocomplete="username" required autofocus value={username}
            onInput={(e) => setUsername(e.target.value)} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required value={password}
            onInput={(e) => setPassword(e.target.value)} />
        </label>
        {error ? <div class="error-box" role="alert">{error}</div> : null}
        <button type="submit" class="btn btn-primary btn-block" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </div>
  );
}
