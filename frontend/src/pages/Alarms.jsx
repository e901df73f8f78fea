// Alarms: the API's filters, newest first, paged, live; acknowledge/clear per role; the selected
// alarm's place on a small map and its files with thumbnails and in-page playback.
import { Fragment } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { adminPath, get, post, thumbnailUrl, videoUrl } from '../api.js';
import { COLORS, L } from '../map.js';
import {
  ALARM_STATUSES, ALARM_TYPES, can, fmtNumber, fmtTime, fromLocalInput, humanize, toLocalInput,
} from '../util.js';
import {
  AlarmStatus, AlarmType, DeviceName, DevicePicker, Empty, ErrorText, MapView, Time, useAction, useApp, useFeed,
  useFleetMembership, useReconnect,
} from '../components/ui.jsx';

const PAGE = 50;
const MAX_ROWS = 5000;

function filtersFrom(params) {
  return {
    imei: params.imei || '',
    type: params.type || '',
    status: params.status || '',
    since: params.since || '',
    until: params.until || '',
    has_video: params.has_video || '',
  };
}

function apiQuery(f) {
  const list = (s) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : undefined);
  return {
    imei: list(f.imei), type: list(f.type), status: f.status || undefined, since: f.since || undefined,
    until: f.until || undefined, has_video: f.has_video || undefined,
  };
}

/** Does a live alarm belong in the list the filters describe? */
function matches(f, a) {
  const list = (s) => (s ? s.split(',').map((x) => x.trim().toUpperCase()) : null);
  const imeis = f.imei ? f.imei.split(',').map((x) => x.trim()) : null;
  if (imeis && !imeis.includes(a.imei)) return false;
  const types = list(f.type);
  if (types && !types.includes(a.type)) return false;
  if (f.status && a.status !== f.status) return false;
  if (f.since && Date.parse(a.ts) < Date.parse(f.since)) return false;
  if (f.until && Date.parse(a.ts) >= Date.parse(f.until)) return false;
  const arrived = (a.files || []).some((x) => x.arrived);
  if (f.has_video === 'true' && !arrived) return false;
  if (f.has_video === 'false' && arrived) return false;
  return true;
}

export function Alarms({ params }) {
  const { fleet, navigate, role } = useApp();
  useFleetMembership(fleet); // device names once the fleet has loaded
  const filters = filtersFrom(params);
  const key = JSON.stringify(filters);
  const [rows, setRows] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [status, setStatus] = useState('loading');
  const [error, setError] = useState(null);
  const [fresh, setFresh] = useState(() => new Set());
  const selectedId = params.id || null;
  const [selected, setSelected] = useState(null);
  const seq = useRef(0);

  const loadFirst = async () => {
    const mine = ++seq.current;
    setStatus('loading');
    try {
      const page = await get('/api/v1/admin/alarms', { ...apiQuery(filters), limit: PAGE });
      if (mine !== seq.current) return;
      setRows(page.items);
      setCursor(page.next_cursor);
      setError(null);
    } catch (err) {
      if (mine === seq.current) setError(err);
    }
    if (mine === seq.current) setStatus('done');
  };

  const loadMore = async () => {
    const mine = seq.current;
    setStatus('more');
    try {
      const page = await get('/api/v1/admin/alarms', { ...apiQuery(filters), limit: PAGE, cursor });
      if (mine !== seq.current) return;
      setRows((r) => {
        const ids = new Set(r.map((a) => a.id));
        return [...r, ...page.items.filter((a) => !ids.has(a.id))];
      });
      setCursor(page.next_cursor);
    } catch (err) {
      setError(err);
    }
    setStatus('done');
  };

  useEffect(() => {
    loadFirst();
  }, [key]);
  useReconnect(loadFirst);

  // the selected alarm: from the list, else fetched (a link from the map or the track)
  useEffect(() => {
    if (!selectedId) {
      setSelected(null);
      return;
    }
    const inList = rows.find((a) => a.id === selectedId);
    if (inList) setSelected(inList);
    else get(adminPath('alarms', selectedId)).then(setSelected).catch(() => setSelected(null));
  }, [selectedId, rows]);

  const upsert = (alarm, isNew) => setRows((r) => {
    const i = r.findIndex((a) => a.id === alarm.id);
    if (i >= 0) {
      const next = r.slice();
      next[i] = { ...r[i], ...alarm };
      return next;
    }
    if (!isNew || !matches(filters, alarm)) return r;
    // newest first: place it by time; older than the loaded rows while more pages exist: paging brings it
    const t = Date.parse(alarm.ts);
    const at = r.findIndex((a) => Date.parse(a.ts) < t || (Date.parse(a.ts) === t && a.id < alarm.id));
    if (at < 0 && cursor) return r;
    const next = r.slice();
    next.splice(at < 0 ? r.length : at, 0, alarm);
    setFresh((s) => new Set(s).add(alarm.id));
    setTimeout(() => setFresh((s) => {
      const n = new Set(s);
      n.delete(alarm.id);
      return n;
    }), 6000);
    return next.slice(0, MAX_ROWS);
  });

  useFeed((ev) => {
    if (ev.type === 'alarm' && ev.alarm) upsert(ev.alarm, true);
    else if (ev.type === 'video' && ev.video) {
      const v = ev.video;
      setRows((r) => (r.some((a) => a.imei === ev.imei && (a.files || []).some((f) => f.name === v.name))
        ? r.map((a) => (a.imei !== ev.imei ? a : {
          ...a,
          files: (a.files || []).map((f) => (f.name === v.name
            ? { ...f, arrived: !!v.complete || f.arrived, thumbnail: v.thumbnail ?? f.thumbnail } : f)),
        }))
        : r));
    }
  }, [key, cursor]);

  const setFilter = (next) => navigate('alarms', { ...next, id: undefined });
  const select = (id) => navigate('alarms', { ...filters, id: id || undefined }, { replace: true });

  return (
    <div class="page-col">
      <FilterBar filters={filters} onApply={setFilter} />
      <div class="split split-right">
        <section class="table-wrap">
          <ErrorText error={error} />
          <table class="table">
            <thead>
              <tr>
                <th>Time</th><th>Device</th><th>Type</th><th>Status</th><th class="num">Speed</th><th>Video</th>
                {can(role, 'alarm.ack') ? <th class="actions">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {rows.map((a) => (
                <tr key={a.id} class={`clickable ${a.id === selectedId ? 'selected' : ''} ${fresh.has(a.id) ? 'fresh' : ''}`}
                  onClick={() => select(a.id)}>
                  <td class="nowrap"><Time iso={a.ts} /></td>
                  <td><DeviceName imei={a.imei} link={false} /></td>
                  <td><AlarmType type={a.type} /></td>
                  <td><AlarmStatus status={a.status} /></td>
                  <td class="num">{a.speed_kmh != null ? `${fmtNumber(a.speed_kmh)} km/h` : ''}</td>
                  <td><FilesSummary files={a.files} /></td>
                  {can(role, 'alarm.ack') ? <td class="actions" onClick={(e) => e.stopPropagation()}><Lifecycle alarm={a} onDone={(x) => upsert(x)} compact /></td> : null}
                </tr>
              ))}
            </tbody>
          </table>
          {status === 'loading' ? <p class="muted pad">Loading alarms…</p> : null}
          {status !== 'loading' && !rows.length && !error ? <Empty>No alarm matches these filters.</Empty> : null}
          {cursor ? (
            <div class="more">
              <button type="button" class="btn" onClick={loadMore} disabled={status === 'more'}>
                {status === 'more' ? 'Loading…' : 'Load older alarms'}
              </button>
            </div>
          ) : null}
        </section>
        {selected ? <AlarmDetail key={selected.id} alarm={selected} onClose={() => select(null)} onChange={(x) => upsert(x)} /> : null}
      </div>
    </div>
  );
}

function FilterBar({ filters, onApply }) {
  const [f, setF] = useState(() => ({ ...filters, since: toLocalInput(filters.since), until: toLocalInput(filters.until) }));
  useEffect(() => setF({ ...filters, since: toLocalInput(filters.since), until: toLocalInput(filters.until) }), [JSON.stringify(filters)]);
  const apply = (e, next = f) => {
    if (e) e.preventDefault();
    onApply({ ...next, since: fromLocalInput(next.since) || '', until: fromLocalInput(next.until) || '' });
  };
  const change = (k) => (e) => {
    const next = { ...f, [k]: e.target.value };
    setF(next);
    if (e.target.tagName === 'SELECT') apply(null, next);
  };
  return (
    <form class="filters" onSubmit={apply}>
      <label>Device<DevicePicker value={f.imei} onChange={(imei) => setF({ ...f, imei })} placeholder="Any device" /></label>
      <label>Type
        <select value={f.type} onChange={change('type')}>
          <option value="">Any type</option>
          {ALARM_TYPES.map((t) => <option key={t} value={t}>{humanize(t)}</option>)}
        </select>
      </label>
      <label>Status
        <select value={f.status} onChange={change('status')}>
          <option value="">Any status</option>
          {ALARM_STATUSES.map((s) => <option key={s} value={s}>{humanize(s)}</option>)}
        </select>
      </label>
      <label>Video
        <select value={f.has_video} onChange={change('has_video')}>
          <option value="">Any</option>
          <option value="true">With video</option>
          <option value="false">Without video</option>
        </select>
      </label>
      <label>From<input type="datetime-local" value={f.since} onInput={change('since')} /></label>
      <label>To<input type="datetime-local" value={f.until} onInput={change('until')} /></label>
      <div class="filter-buttons">
        <button type="submit" class="btn btn-primary">Apply</button>
        <button type="button" class="btn btn-ghost" onClick={() => onApply({})}>Reset</button>
      </div>
    </form>
  );
}

function FilesSummary({ files }) {
  if (!files || !files.length) return <span class="muted">–</span>;
  const arrived = files.filter((f) => f.arrived).length;
  return (
    <span class={`files-badge ${arrived === files.length ? 'ok' : 'pending'}`} title={`${arrived} of ${files.length} files arrived`}>
      {arrived === files.length ? '▶' : '…'} {arrived}/{files.length}
    </span>
  );
}

function Lifecycle({ alarm, onDone, compact }) {
  const { role } = useApp();
  const [busy, run] = useAction();
  const [note, setNote] = useState('');
  const [asking, setAsking] = useState(false);
  if (!can(role, 'alarm.ack')) return null;
  const ack = () => run(async () => {
    const body = note.trim() ? { note: note.trim() } : {};
    onDone(await post(adminPath('alarms', alarm.id, 'ack'), body));
    setAsking(false);
  }, 'Alarm acknowledged');
  const clear = () => run(async () => onDone(await post(adminPath('alarms', alarm.id, 'clear'), {})), 'Alarm cleared');
  const ackButton = alarm.status === 'active'
    ? (compact
      ? <button type="button" class="btn btn-small" disabled={busy} onClick={ack}>Ack</button>
      : <button type="button" class="btn btn-primary" disabled={busy} onClick={() => (asking ? ack() : setAsking(true))}>{asking ? 'Confirm acknowledge' : 'Acknowledge'}</button>)
    : null;
  const clearButton = alarm.status !== 'cleared'
    ? <button type="button" class={`btn ${compact ? 'btn-small' : ''}`} disabled={busy} onClick={clear}>Clear</button>
    : null;
  return (
    <div class={compact ? 'btn-row-tight' : 'lifecycle'}>
      {asking && !compact ? (
        <input class="note" placeholder="Note (optional)" maxLength={2000} value={note} onInput={(e) => setNote(e.target.value)} />
      ) : null}
      <div class="btn-row-tight">{ackButton}{clearButton}</div>
    </div>
  );
}

function AlarmDetail({ alarm, onClose, onChange }) {
  const [a, setA] = useState(alarm);
  const refresh = useRef(null);
  useEffect(() => setA(alarm), [alarm]);

  const reload = () => get(adminPath('alarms', alarm.id)).then((x) => {
    setA(x);
    onChange(x);
  }).catch(() => {});
  // a file arriving: read the alarm again now, and once more when its thumbnail should be made
  useFeed((ev) => {
    if (ev.type === 'video' && ev.imei === alarm.imei && (a.files || []).some((f) => f.name === (ev.video || {}).name)) {
      reload();
      clearTimeout(refresh.current);
      refresh.current = setTimeout(reload, 11000);
    }
  }, [alarm.id]);
  useEffect(() => () => clearTimeout(refresh.current), []);

  const onMap = (map) => {
    map.setView([a.lat, a.lon], 15);
    L.circleMarker([a.lat, a.lon], { radius: 9, color: '#fff', weight: 3, fillColor: COLORS.alarm, fillOpacity: 1 }).addTo(map);
  };

  return (
    <aside class="detail-panel">
      <div class="details-head">
        <div>
          <AlarmType type={a.type} />
          <h2>{fmtTime(a.ts)}</h2>
        </div>
        <button type="button" class="icon-btn" aria-label="Close" onClick={onClose}>×</button>
      </div>
      <div class="detail-status">
        <AlarmStatus status={a.status} />
        <DeviceName imei={a.imei} />
      </div>
      <MapView class="mini-map" onReady={onMap} options={{ zoomControl: false, attributionControl: true }} />
      <dl class="kv">
        <dt>Position</dt><dd>{fmtNumber(a.lat, 5)}, {fmtNumber(a.lon, 5)}</dd>
        {a.speed_kmh != null ? <><dt>Speed</dt><dd>{fmtNumber(a.speed_kmh)} km/h</dd></> : null}
        <dt>Received</dt><dd><Time iso={a.received_at} /></dd>
        {a.acknowledged_at ? <><dt>Acknowledged</dt><dd><Time iso={a.acknowledged_at} /> by {a.acknowledged_by}</dd></> : null}
        {a.ack_note ? <><dt>Note</dt><dd class="prewrap">{a.ack_note}</dd></> : null}
        {a.cleared_at ? <><dt>Cleared</dt><dd><Time iso={a.cleared_at} /> by {a.cleared_by}</dd></> : null}
        {a.details && typeof a.details === 'object' ? Object.entries(a.details).slice(0, 20).map(([k, v]) => (
          <Fragment key={k}><dt>{humanize(k)}</dt><dd>{typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd></Fragment>
        )) : null}
      </dl>
      <Lifecycle alarm={a} onDone={(x) => {
        setA(x);
        onChange(x);
      }} />
      <h3>Video</h3>
      {!a.files || !a.files.length ? <p class="muted small">This alarm has no files.</p> : (
        <div class="files">
          {a.files.map((f) => <FileCard key={f.name} imei={a.imei} file={f} />)}
        </div>
      )}
      <p class="small"><a href={`#/track?imei=${a.imei}&since=${encodeURIComponent(new Date(Date.parse(a.ts) - 15 * 60000).toISOString())}&until=${encodeURIComponent(new Date(Date.parse(a.ts) + 15 * 60000).toISOString())}`}>Track ±15 min around this alarm</a></p>
    </aside>
  );
}

function FileCard({ imei, file }) {
  const [playing, setPlaying] = useState(false);
  const url = videoUrl(imei, file.name);
  if (!file.arrived) {
    return (
      <div class="file-card pending">
        <div class="thumb thumb-empty">Not arrived yet</div>
        <div class="file-name mono">{file.name}</div>
        <div class="muted small">Waiting for the device to upload it.</div>
      </div>
    );
  }
  return (
    <div class="file-card">
      {playing ? (
        // the download URL itself: the browser streams it with Range requests
        <video class="player" src={url} controls autoPlay preload="metadata" />
      ) : (
        <button type="button" class="thumb" onClick={() => setPlaying(true)} aria-label={`Play ${file.name}`}>
          {file.thumbnail ? <img src={thumbnailUrl(imei, file.name)} alt="" /> : <span class="thumb-empty">No preview</span>}
          <span class="play-icon">▶</span>
        </button>
      )}
      <div class="file-row">
        <span class="file-name mono">{file.name}</span>
        <span class="badge badge-ok">Arrived</span>
      </div>
      <a class="small" href={url} download={file.name}>Download</a>
    </div>
  );
}
