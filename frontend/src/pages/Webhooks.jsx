// Webhooks (admin): endpoints that receive the fleet's events (Standard Webhooks). Create (the
// signing secret is shown once), enable/disable, delete, and look at deliveries with a retry button.
import { useEffect, useState } from 'preact/hooks';
import { adminPath, allPages, del, get, missingEndpoint, patch, post } from '../api.js';
import { WEBHOOK_EVENTS } from '../util.js';
import { Empty, ErrorText, Modal, SecretBox, Time, useAction } from '../components/ui.jsx';

export function Webhooks() {
  const [hooks, setHooks] = useState(null);
  const [error, setError] = useState(null);
  const [missing, setMissing] = useState(false);
  const [creating, setCreating] = useState(false);
  const [secret, setSecret] = useState(null);
  const [deliveries, setDeliveries] = useState(null);

  const load = () => allPages('/api/v1/admin/webhooks', {}, { limit: 100, max: 2000 }).then(({ items }) => {
    setHooks(items);
    setError(null);
  }).catch((err) => {
    if (missingEndpoint(err)) setMissing(true);
    else setError(err);
  });
  useEffect(() => {
    load();
  }, []);

  if (missing) {
    return (
      <div class="page-col">
        <div class="toolbar"><h2>Webhooks</h2></div>
        <section class="table-wrap narrow"><div class="info-box">This server does not have webhooks yet.</div></section>
      </div>
    );
  }

  return (
    <div class="page-col">
      <div class="toolbar">
        <h2>Webhooks</h2>
        <div class="grow" />
        <button type="button" class="btn btn-primary" onClick={() => setCreating(true)}>New webhook</button>
      </div>
      <section class="table-wrap">
        <ErrorText error={error} />
        {hooks === null && !error ? <p class="muted pad">Loading webhooks…</p> : null}
        {hooks && !hooks.length ? <Empty>No webhook yet. A webhook posts the fleet's events (alarms, devices going online or offline, geofences, commands, videos) to a URL of yours, signed.</Empty> : null}
        {hooks && hooks.length ? (
          <table class="table">
            <thead><tr><th>URL</th><th>Events</th><th>Description</th><th>State</th><th>Created</th><th class="actions">Actions</th></tr></thead>
            <tbody>
              {hooks.map((h) => (
                <tr key={h.id}>
                  <td class="mono small break">{h.url}</td>
                  <td class="small">{(h.events || []).map((e) => <span key={e} class="chip chip-static">{e}</span>)}</td>
                  <td>{h.description || ''}</td>
                  <td>{h.enabled === false ? <span class="badge badge-muted">Disabled</span> : <span class="badge badge-ok">Enabled</span>}</td>
                  <td class="nowrap"><Time iso={h.created_at} /></td>
                  <td class="actions"><HookActions hook={h} onChange={load} onDeliveries={() => setDeliveries(h)} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
      {creating ? <CreateHook onClose={() => setCreating(false)} onDone={(h) => {
        setCreating(false);
        setSecret(h);
        load();
      }} /> : null}
      {secret ? (
        <Modal title="Webhook created" onClose={() => setSecret(null)}>
          <p>Deliveries to <span class="mono break">{secret.url}</span> are signed with this secret.</p>
          <SecretBox label="Verify the webhook-signature header with it." value={secret.secret || ''} />
          <div class="btn-row"><button type="button" class="btn btn-primary" onClick={() => setSecret(null)}>Done</button></div>
        </Modal>
      ) : null}
      {deliveries ? <Deliveries hook={deliveries} onClose={() => setDeliveries(null)} /> : null}
    </div>
  );
}

function HookActions({ hook, onChange, onDeliveries }) {
  const [busy, run] = useAction();
  const [confirm, setConfirm] = useState(false);
  return (
    <div class="btn-row-tight">
      <button type="button" class="btn btn-small" onClick={onDeliveries}>Deliveries</button>
      <button type="button" class="btn btn-small" disabled={busy}
        onClick={() => run(() => patch(adminPath('webhooks', hook.id), { enabled: hook.enabled === false }), hook.enabled === false ? 'Webhook enabled' : 'Webhook disabled').then(onChange)}>
        {hook.enabled === false ? 'Enable' : 'Disable'}
      </button>
      {confirm ? (
        <>
          <button type="button" class="btn btn-small btn-danger" disabled={busy}
            onClick={() => run(() => del(adminPath('webhooks', hook.id)), 'Webhook deleted').then(onChange)}>Delete</button>
          <button type="button" class="btn btn-small btn-ghost" onClick={() => setConfirm(false)}>Keep</button>
        </>
      ) : <button type="button" class="btn btn-small btn-danger-ghost" onClick={() => setConfirm(true)}>Delete</button>}
    </div>
  );
}

function CreateHook({ onClose, onDone }) {
  const [url, setUrl] = useState('https://');
  const [events, setEvents] = useState(['alarm.created']);
  const [description, setDescription] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const toggle = (e) => setEvents(events.includes(e) ? events.filter((x) => x !== e) : [...events, e]);
  const submit = async (ev) => {
    ev.preventDefault();
    if (!events.length) {
      setError(new Error('Choose at least one event.'));
      return;
    }
    setBusy(true);
    try {
      onDone(await post('/api/v1/admin/webhooks', { url: url.trim(), events, ...(description.trim() ? { description: description.trim() } : {}) }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="New webhook" onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>URL<input type="url" required value={url} onInput={(e) => setUrl(e.target.value)} autofocus /></label>
        <fieldset class="checks">
          <legend>Events</legend>
          {WEBHOOK_EVENTS.map((e) => (
            <label key={e} class="check"><input type="checkbox" checked={events.includes(e)} onChange={() => toggle(e)} /> <span class="mono small">{e}</span></label>
          ))}
        </fieldset>
        <label>Description <span class="muted small">(optional)</span><input value={description} maxLength={500} onInput={(e) => setDescription(e.target.value)} /></label>
        <ErrorText error={error} />
        <div class="btn-row">
          <button type="submit" class="btn btn-primary" disabled={busy}>Create</button>
          <button type="button" class="btn btn-ghost" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </Modal>
  );
}

function Deliveries({ hook, onClose }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [busy, run] = useAction();
  const load = () => get(adminPath('webhooks', hook.id, 'deliveries'), { limit: 50 }).then((r) => setItems(r.items)).catch(setError);
  useEffect(() => {
    load();
  }, []);
  return (
    <Modal title={`Deliveries to ${hook.url}`} onClose={onClose} wide>
      <ErrorText error={error} />
      {items && !items.length ? <Empty>No delivery yet.</Empty> : null}
      {items && items.length ? (
        <table class="table">
          <thead><tr><th>Created</th><th>Type</th><th>Status</th><th class="num">Attempts</th><th>Last answer</th><th>Next attempt</th><th /></tr></thead>
          <tbody>
            {items.map((d) => (
              <tr key={d.id}>
                <td class="nowrap"><Time iso={d.created_at} /></td>
                <td class="mono small">{d.type}</td>
                <td><span class={`badge ${d.status === 'delivered' ? 'badge-ok' : d.status === 'failed' ? 'badge-alarm' : 'badge-info'}`}>{d.status}</span></td>
                <td class="num">{d.attempts}</td>
                <td class="small">{d.last_status_code || ''} {d.last_error || ''}</td>
                <td class="nowrap small"><Time iso={d.next_attempt_at} /></td>
                <td>{d.status !== 'delivered' ? (
                  <button type="button" class="btn btn-small" disabled={busy}
                    onClick={() => run(() => post(adminPath('webhooks', hook.id, 'deliveries', d.id, 'retry'), {}), 'Retry scheduled').then(load)}>Retry</button>
                ) : null}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Modal>
  );
}
