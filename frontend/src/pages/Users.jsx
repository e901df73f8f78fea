// Users: the accounts of the admin plane. Admins create, delete, change roles and set passwords;
// everyone may change their own password.
import { useEffect, useState } from 'preact/hooks';
import { adminPath, del, get, patch, post } from '../api.js';
import { can, humanize } from '../util.js';
import { Empty, ErrorText, Modal, Time, useAction, useApp } from '../components/ui.jsx';

const ROLES = ['admin', 'operator', 'viewer'];
const PASSWORD_MIN = 12;

export function Users() {
  const { role, session } = useApp();
  const admin = can(role, 'admin');
  const [users, setUsers] = useState(null);
  const [error, setError] = useState(null);
  const [creating, setCreating] = useState(false);
  const [password, setPassword] = useState(null); // username whose password is being set

  const load = () => get('/api/v1/admin/users').then((r) => {
    setUsers(r.items);
    setError(null);
  }).catch(setError);
  useEffect(() => {
    load();
  }, []);

  return (
    <div class="page-col">
      <div class="toolbar">
        <h2>Users</h2>
        <div class="grow" />
        <button type="button" class="btn" onClick={() => setPassword(session.username)}>Change my password</button>
        {admin ? <button type="button" class="btn btn-primary" onClick={() => setCreating(true)}>New user</button> : null}
      </div>
      <section class="table-wrap narrow">
        <ErrorText error={error} />
        {users && !users.length ? <Empty>No users.</Empty> : null}
        {users === null && !error ? <p class="muted pad">Loading users…</p> : null}
        {users && users.length ? (
          <table class="table">
            <thead><tr><th>User</th><th>Role</th><th>Created</th>{admin ? <th class="actions">Actions</th> : null}</tr></thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.username}>
                  <td><strong>{u.username}</strong>{u.username === session.username ? <span class="muted small"> (you)</span> : null}</td>
                  <td>{admin && u.username !== session.username
                    ? <RoleSelect user={u} onDone={load} />
                    : <span class={`role-badge role-${u.role}`}>{humanize(u.role)}</span>}</td>
                  <td><Time iso={u.created_at} /></td>
                  {admin ? (
                    <td class="actions">
                      <div class="btn-row-tight">
                        <button type="button" class="btn btn-small" onClick={() => setPassword(u.username)}>Set password</button>
                        {u.username !== session.username ? <DeleteUser user={u} onDone={load} /> : null}
                      </div>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <p class="muted small pad">Admins may change everything; operators read, acknowledge and clear alarms and send commands; viewers read.</p>
      </section>
      {creating ? <CreateUser onClose={() => setCreating(false)} onDone={() => {
        setCreating(false);
        load();
      }} /> : null}
      {password ? <PasswordModal username={password} self={password === session.username} onClose={() => setPassword(null)} /> : null}
    </div>
  );
}

function RoleSelect({ user, onDone }) {
  const [busy, run] = useAction();
  return (
    <select value={user.role} disabled={busy} aria-label={`Role of ${user.username}`}
      onChange={(e) => {
        const role = e.target.value;
        // reloaded either way: on failure the select shows the stored role again
        run(() => patch(adminPath('users', user.username), { role }), `${user.username} is now ${role}`).then(onDone);
      }}>
      {ROLES.map((r) => <option key={r} value={r}>{humanize(r)}</option>)}
    </select>
  );
}

function DeleteUser({ user, onDone }) {
  const [confirm, setConfirm] = useState(false);
  const [busy, run] = useAction();
  if (!confirm) return <button type="button" class="btn btn-small btn-danger-ghost" onClick={() => setConfirm(true)}>Delete</button>;
  return (
    <>
      <button type="button" class="btn btn-small btn-danger" disabled={busy}
        onClick={() => run(async () => {
          await del(adminPath('users', user.username));
          onDone();
        }, `User ${user.username} deleted`)}>Delete {user.username}</button>
      <button type="button" class="btn btn-small btn-ghost" onClick={() => setConfirm(false)}>Keep</button>
    </>
  );
}

function CreateUser({ onClose, onDone }) {
  const [form, setForm] = useState({ username: '', password: '', role: 'viewer' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await post('/api/v1/admin/users', form);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="New user" onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>User name<input required maxLength={64} autocomplete="off" value={form.username} onInput={set('username')} autofocus /></label>
        <label>Password <span class="muted small">(at least {PASSWORD_MIN} characters)</span>
          <input type="password" required minLength={PASSWORD_MIN} autocomplete="new-password" value={form.password} onInput={set('password')} /></label>
        <label>Role
          <select value={form.role} onChange={set('role')}>
            {ROLES.map((r) => <option key={r} value={r}>{humanize(r)}</option>)}
          </select>
        </label>
        <ErrorText error={error} />
        <div class="btn-row">
          <button type="submit" class="btn btn-primary" disabled={busy}>Create</button>
          <button type="button" class="btn btn-ghost" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </Modal>
  );
}

function PasswordModal({ username, self, onClose }) {
  const { toast } = useApp();
  const [current, setCurrent] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (password !== repeat) {
      setError(new Error('The two new passwords differ.'));
      return;
    }
    setBusy(true);
    try {
      await post(adminPath('users', username, 'password'), self ? { password, current_password: current } : { password });
      toast(self ? 'Password changed: sign in again with the new one.' : `Password of ${username} changed`, 'ok');
      onClose();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title={self ? 'Change my password' : `Set the password of ${username}`} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        {self ? <label>Current password<input type="password" required autocomplete="current-password" value={current} onInput={(e) => setCurrent(e.target.value)} autofocus /></label> : null}
        <label>New password<input type="password" required minLength={PASSWORD_MIN} autocomplete="new-password" value={password} onInput={(e) => setPassword(e.target.value)} /></label>
        <label>New password again<input type="password" required minLength={PASSWORD_MIN} autocomplete="new-password" value={repeat} onInput={(e) => setRepeat(e.target.value)} /></label>
        <p class="muted small">Changing a password signs that user out everywhere.</p>
        <ErrorText error={error} />
        <div class="btn-row">
          <button type="submit" class="btn btn-primary" disabled={busy}>Change password</button>
          <button type="button" class="btn btn-ghost" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </Modal>
  );
}
