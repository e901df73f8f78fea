// Commands: send one to a device, watch its state change live (command_status events), cancel a
// queued one. The list is GET /api/v1/admin/commands; on a server without it, the commands sent from
// this page are listed instead.
import { useEffect, useRef, useState } from 'preact/hooks';
import { adminPath, del, get, missingEndpoint, post } from '../api.js';
import { can, COMMAND_STATUSES, fmtTime, fromLocalInput, humanize, toLocalInput, validImei } from '../util.js';
import {
  CommandStatus, DeviceName, DevicePicker, Empty, ErrorText, Time, useAction, useApp, useFeed, useFleetMembership,
  useReconnect,
} from '../components/ui.jsx';

const PAGE = 50;
const RANK = { queued: 0, sent: 1, succeeded: 2, failed: 2, expired: 2, cancelled: 2 };
const TTLS = [[300, '5 minutes'], [3600, '1 hour'], [86400, '1 day'], [7 * 86400, '7 days']];

function argsText(c) {
  const a = c.args || {};
  if (c.command === 'set_report_interval' && a.seconds != null) return `every ${a.seconds} s`;
  if (c.command === 'request_video' && a.from) return `${fmtTime(a.from)} – ${fmtTime(a.to).slice(11)}`;
  const keys = Object.keys(a);
  return keys.length ? JSON.stringify(a) : '';
}

export function Commands({ params }) {
  const { fleet, role, navigate } = useApp();
  useFleetMembership(fleet); // device names once the fleet has loaded
  const imei = params.imei || '';
  const statusFilter = params.status || '';
  const [rows, setRows] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);

  const query = () => ({ imei: imei || undefined, status: statusFilter || undefined, limit: PAGE });
  const loadFirst = async () => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      const page = await get('/api/v1/admin/commands', query());
      if (mine !== seq.current) return;
      // a command sent (or changed on the feed) while this page was in flight stays, at its newest state
      setRows((r) => {
        const listed = new Set(page.items.map((c) => c.id));
        const newer = r.filter((c) => !listed.has(c.id) && seen.current.has(c.id) && matches(c));
        return [...newer, ...page.items.map((c) => latest(c))];
      });
      setCursor(page.next_cursor);
      setMissing(false);
      setError(null);
    } catch (err) {
      if (mine !== seq.current) return;
      if (missingEndpoint(err)) setMissing(true);
      else setError(err);
    }
    setLoading(false);
  };
  const loadMore = async () => {
    try {
      const page = await get('/api/v1/admin/commands', { ...query(), cursor });
      setRows((r) => [...r, ...page.items.filter((c) => !r.some((x) => x.id === c.id))]);
      setCursor(page.next_cursor);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    loadFirst();
  }, [imei, statusFilter]);
  useReconnect(() => {
    if (!missing) loadFirst();
    else rows.forEach((c) => get(adminPath('commands', c.id)).then((x) => upsert(x, false)).catch(() => {}));
  });

  const matches = (c) => (!imei || c.imei === imei) && (!statusFilter || c.status === statusFilter);
  // the newest state seen on the feed per command: a POST's answer can arrive after the command's
  // later events (a device online answers within milliseconds)
  const seen = useRef(new Map());
  const remember = (cmd) => {
    const known = seen.current;
    const prev = known.get(cmd.id);
    if (!prev || RANK[cmd.status] >= RANK[prev.status]) {
      known.delete(cmd.id);
      known.set(cmd.id, cmd);
    }
    if (known.size > 1000) known.delete(known.keys().next().value);
  };
  const latest = (given) => {
    const known = seen.current.get(given.id);
    return known && RANK[known.status] > RANK[given.status] ? { ...given, ...known } : given;
  };
  const upsert = (given, isNew) => setRows((r) => {
    const cmd = latest(given);
    const i = r.findIndex((c) => c.id === cmd.id);
    if (i >= 0) {
      // a response may arrive after a newer event: a state never moves backwards
      if (RANK[cmd.status] < RANK[r[i].status]) return r;
      const next = r.slice();
      next[i] = { ...r[i], ...cmd };
      return next;
    }
    if (!isNew || !matches(cmd)) return r;
    return [cmd, ...r].slice(0, 2000);
  });

  useFeed((ev) => {
    if (ev.type !== 'command_status' || !ev.command) return;
    remember(ev.command);
    upsert(ev.command, !missing);
  }, [imei, statusFilter, missing]);

  return (
    <div class="page-col">
      {can(role, 'command.send') ? <SendForm initialImei={imei} onSent={(c) => { remember(c); upsert(c, true); }} /> : null}
      <div class="toolbar">
        <h2>Commands</h2>
        <label class="inline">Device
          <DevicePicker value={imei} onChange={(v) => (validImei(v) || !v ? navigate('commands', { imei: v, status: statusFilter }, { replace: true }) : null)} placeholder="Any device" />
        </label>
        <label class="inline">Status
          <select value={statusFilter} onChange={(e) => navigate('commands', { imei, status: e.target.value }, { replace: true })}>
            <option value="">Any</option>
            {COMMAND_STATUSES.map((s) => <option key={s} value={s}>{humanize(s)}</option>)}
          </select>
        </label>
      </div>
      <section class="table-wrap">
        {missing ? <div class="info-box">This server cannot list commands yet: the commands sent from this page are shown, with their live states.</div> : null}
        <ErrorText error={error} />
        <table class="table">
          <thead>
            <tr><th>Created</th><th>Device</th><th>Command</th><th>Arguments</th><th>Status</th><th>By</th><th>Sent</th><th>Finished</th><th>Detail</th>
              {can(role, 'command.send') ? <th class="actions" /> : null}</tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.id}>
                <td class="nowrap"><Time iso={c.created_at} /></td>
                <td><DeviceName imei={c.imei} /></td>
                <td class="mono">{c.command}</td>
                <td class="small">{argsText(c)}</td>
                <td><CommandStatus status={c.status} /></td>
                <td>{c.created_by || ''}</td>
                <td class="nowrap small"><Time iso={c.sent_at} /></td>
                <td class="nowrap small"><Time iso={c.finished_at} /></td>
                <td class="small">{c.detail || ''}</td>
                {can(role, 'command.send') ? <td class="actions">{c.status === 'queued' ? <CancelButton cmd={c} onDone={(x) => upsert(x, false)} /> : null}</td> : null}
              </tr>
            ))}
          </tbody>
        </table>
        {loading ? <p class="muted pad">Loading commands…</p> : null}
        {!loading && !rows.length ? <Empty>No commands{missing ? ' sent from this page yet' : ''}.</Empty> : null}
        {cursor ? <div class="more"><button type="button" class="btn" onClick={loadMore}>Load older commands</button></div> : null}
      </section>
    </div>
  );
}

function CancelButton({ cmd, onDone }) {
  const [busy, run] = useAction();
  return (
    <button type="button" class="btn btn-small btn-danger-ghost" disabled={busy}
      onClick={() => run(async () => onDone(await del(adminPath('commands', cmd.id))), 'Command cancelled')}>
      Cancel
    </button>
  );
}

function SendForm({ initialImei, onSent }) {
  const [imei, setImei] = useState(initialImei);
  const [command, setCommand] = useState('reset');
  const [seconds, setSeconds] = useState('30');
  const [from, setFrom] = useState(() => toLocalInput(new Date(Date.now() - 5 * 60000)));
  const [to, setTo] = useState(() => toLocalInput(new Date()));
  const [ttl, setTtl] = useState(3600);
  const [error, setError] = useState(null);
  const [busy, run] = useAction();
  useEffect(() => setImei(initialImei), [initialImei]);

  const submit = (e) => {
    e.preventDefault();
    setError(null);
    if (!validImei(imei)) {
      setError(new Error('Choose a registered device (15-digit IMEI).'));
      return;
    }
    let args = {};
    if (command === 'set_report_interval') args = { seconds: Number(seconds) };
    if (command === 'request_video') {
      const f = fromLocalInput(from);
      const t = fromLocalInput(to);
      if (!f || !t || f >= t) {
        setError(new Error('The video window must end after it starts.'));
        return;
      }
      args = { from: f, to: t };
    }
    run(async () => {
      const sent = await post(adminPath('devices', imei, 'commands'), { command, args, ttl_s: ttl });
      let full = sent;
      if (!sent.command) {
        try {
          full = await get(adminPath('commands', sent.id));
        } catch {
          full = { ...sent, imei, command, args, created_at: new Date().toISOString() };
        }
      }
      onSent(full);
    }, `Command ${command} queued`);
  };

  return (
    <form class="send-form" onSubmit={submit}>
      <h2>Send a command</h2>
      <div class="send-fields">
        <label>Device<DevicePicker value={imei} onChange={setImei} required /></label>
        <label>Command
          <select value={command} onChange={(e) => setCommand(e.target.value)}>
            <option value="reset">Reset (reboot)</option>
            <option value="set_report_interval">Set report interval</option>
            <option value="request_video">Request video</option>
          </select>
        </label>
        {command === 'set_report_interval' ? (
          <label>Seconds<input type="number" min="1" max="86400" required value={seconds} onInput={(e) => setSeconds(e.target.value)} /></label>
        ) : null}
        {command === 'request_video' ? (
          <>
            <label>From<input type="datetime-local" required value={from} onInput={(e) => setFrom(e.target.value)} /></label>
            <label>To<input type="datetime-local" required value={to} onInput={(e) => setTo(e.target.value)} /></label>
          </>
        ) : null}
        <label>Expires after
          <select value={ttl} onChange={(e) => setTtl(Number(e.target.value))}>
            {TTLS.map(([s, label]) => <option key={s} value={s}>{label}</option>)}
          </select>
        </label>
        <button type="submit" class="btn btn-primary" disabled={busy}>{busy ? 'Sending…' : 'Send'}</button>
      </div>
      <ErrorText error={error} />
    </form>
  );
}
