// Devices: the fleet as a table. Admins register (the secret is shown once), rename, disable/enable
// and rotate secrets; other roles read.
import { useState } from 'preact/hooks';
import { adminPath, get, patch, post } from '../api.js';
import { can, validImei } from '../util.js';
import {
  DeviceStatus, Empty, ErrorText, Modal, SecretBox, Time, useAction, useApp, useFleet, useTicker,
} from '../components/ui.jsx';

const LIMIT = 500;

export function Devices() {
  const { fleet, role } = useApp();
  useFleet(fleet);
  useTicker(15000);
  const admin = can(role, 'admin');
  const [query, setQuery] = useState('');
  const [registering, setRegistering] = useState(false);
  const [secret, setSecret] = useState(null);
  const [editing, setEditing] = useState(null);

  const q = query.trim().toLowerCase();
  const rows = fleet.list()
    .filter((d) => !q || d.imei.includes(q) || (d.name || '').toLowerCase().includes(q))
    .sort((a, b) => (a.name || a.imei).localeCompare(b.name || b.imei));

  return (
    <div class="page-col">
      <div class="toolbar">
        <h2>Devices <span class="muted">{fleet.list().length}</span></h2>
        <input type="search" placeholder="Search name or IMEI" value={query} onInput={(e) => setQuery(e.target.value)} aria-label="Search devices" />
        <div class="grow" />
        {admin ? <button type="button" class="btn btn-primary" onClick={() => setRegistering(true)}>Register device</button> : null}
      </div>
      <section class="table-wrap">
        <ErrorText error={fleet.error} />
        <table class="table">
          <thead>
            <tr><th>Status</th><th>Name</th><th>IMEI</th><th>Last seen</th><th>Registered</th>{admin ? <th class="actions">Actions</th> : null}</tr>
          </thead>
          <tbody>
            {rows.slice(0, LIMIT).map((d) => (
              <tr key={d.imei}>
                <td><DeviceStatus device={d} /></td>
                <td>{editing === d.imei
                  ? <RenameForm device={d} onDone={() => setEditing(null)} />
                  : <a href={`#/map?imei=${d.imei}`}>{d.name || <span class="muted">unnamed</span>}</a>}</td>
                <td class="mono">{d.imei}</td>
                <td class="nowrap"><Time iso={d.last_seen} ago /></td>
                <td class="nowrap"><Time iso={d.created_at} /></td>
                {admin ? (
                  <td class="actions">
                    <DeviceActions device={d} onRename={() => setEditing(d.imei)} onSecret={setSecret} />
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
        {!fleet.loaded ? <p class="muted pad">Loading devices…</p> : null}
        {fleet.loaded && !rows.length ? <Empty>No device{q ? ' matches' : ' is registered yet'}.</Empty> : null}
        {rows.length > LIMIT ? <p class="muted pad small">{rows.length - LIMIT} more: refine the search.</p> : null}
      </section>
      {registering ? <RegisterModal onClose={() => setRegistering(false)} onDone={(d) => {
        setRegistering(false);
        setSecret({ imei: d.imei, secret: d.secret, created: true });
      }} /> : null}
      {secret ? (
        <Modal title={secret.created ? 'Device registered' : 'Secret rotated'} onClose={() => setSecret(null)}>
          <p>Device <span class="mono">{secret.imei}</span>{secret.created ? ' is registered.' : ' has a new secret; its old secret and tokens no longer work.'}</p>
          <SecretBox label="The device logs in with this secret." value={secret.secret} />
          <div class="btn-row"><button type="button" class="btn btn-primary" onClick={() => setSecret(null)}>Done</button></div>
        </Modal>
      ) : null}
    </div>
  );
}

function DeviceActions({ device, onRename, onSecret }) {
  const { fleet } = useApp();
  const [busy, run] = useAction();
  const [confirm, setConfirm] = useState(false);
  const toggle = () => run(async () => fleet.put(await patch(adminPath('devices', device.imei), { enabled: !device.enabled })),
    device.enabled ? 'Device disabled' : 'Device enabled');
  const rotate = () => run(async () => {
    const r = await post(adminPath('devices', device.imei, 'secret'), {});
    setConfirm(false);
    onSecret({ imei: r.imei, secret: r.secret });
  });
  return (
    <div class="btn-row-tight">
      <button type="button" class="btn btn-small" onClick={onRename}>Rename</button>
      <button type="button" class={`btn btn-small ${device.enabled ? 'btn-danger-ghost' : ''}`} disabled={busy} onClick={toggle}>
        {device.enabled ? 'Disable' : 'Enable'}
      </button>
      {confirm ? (
        <>
          <button type="button" class="btn btn-small btn-danger" disabled={busy} onClick={rotate}>Rotate now</button>
          <button type="button" class="btn btn-small btn-ghost" onClick={() => setConfirm(false)}>Keep</button>
        </>
      ) : <button type="button" class="btn btn-small" onClick={() => setConfirm(true)}>Rotate secret</button>}
    </div>
  );
}

function RenameForm({ device, onDone }) {
  const { fleet } = useApp();
  const [name, setName] = useState(device.name || '');
  const [busy, run] = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      fleet.put(await patch(adminPath('devices', device.imei), { name: name.trim() || null }));
      onDone();
    }, 'Device renamed');
  };
  return (
    <form class="inline-form" onSubmit={submit}>
      <input value={name} maxLength={128} autofocus onInput={(e) => setName(e.target.value)} aria-label="Name" />
      <button type="submit" class="btn btn-small btn-primary" disabled={busy}>Save</button>
      <button type="button" class="btn btn-small btn-ghost" onClick={onDone}>Cancel</button>
    </form>
  );
}

function RegisterModal({ onClose, onDone }) {
  const { fleet } = useApp();
  const [imei, setImei] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (!validImei(imei.trim())) {
      setError(new Error('An IMEI is 15 digits, the last one the Luhn check digit of the others.'));
      return;
    }
    setBusy(true);
    try {
      const d = await post('/api/v1/admin/devices', { imei: imei.trim(), ...(name.trim() ? { name: name.trim() } : {}) });
      try {
        fleet.put(await get(adminPath('devices', d.imei)));
      } catch {
        fleet.put({ imei: d.imei, name: d.name, enabled: true, online: false, last_seen: null, last_location: null });
      }
      onDone(d);
    } catch (err) {
      setError(err.status === 409 ? new Error('This IMEI is registered already.') : err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="Register a device" onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>IMEI<input class="mono" inputMode="numeric" required maxLength={15} value={imei} autofocus
          onInput={(e) => setImei(e.target.value)} placeholder="15 digits" /></label>
        <label>Name <span class="muted small">(optional)</span><input value={name} maxLength={128} onInput={(e) => setName(e.target.value)} placeholder="e.g. Truck 12" /></label>
        <ErrorText error={error} />
        <div class="btn-row">
          <button type="submit" class="btn btn-primary" disabled={busy}>Register</button>
          <button type="button" class="btn btn-ghost" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </Modal>
  );
}
