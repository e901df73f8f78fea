// Geofences: every fence drawn on the map, the recent enter/exit events, and (admins) new fences
// drawn by clicking on the map (a circle or a polygon) or entered as GeoJSON / centre and radius.
import { useEffect, useRef, useState } from 'preact/hooks';
import { adminPath, allPages, del, get, missingEndpoint, post } from '../api.js';
import { COLORS, fenceLayer, fitTo, L, textContent } from '../map.js';
import { can, fmtNumber, fmtTime, humanize } from '../util.js';
import {
  Empty, ErrorText, MapView, useAction, useApp, useFeed, useFleetMembership, useReconnect,
} from '../components/ui.jsx';

export function Geofences() {
  const { role, fleet } = useApp();
  useFleetMembership(fleet);
  const admin = can(role, 'admin');
  const [fences, setFences] = useState(null);
  const [events, setEvents] = useState(null);
  const [error, setError] = useState(null);
  const [missing, setMissing] = useState(false);
  const [draft, setDraft] = useState(null); // {mode, points, center, radius}
  const mapRef = useRef(null);
  const layer = useRef(null);
  const draftLayer = useRef(null);
  const layersById = useRef(new Map());
  const draftRef = useRef(draft);
  draftRef.current = draft;

  const load = () => allPages('/api/v1/admin/geofences', {}, { limit: 1000, max: 5000 }).then(({ items }) => {
    setFences(items);
    setError(null);
  }).catch((err) => {
    if (missingEndpoint(err)) setMissing(true);
    else setError(err);
  });
  const loadEvents = () => get('/api/v1/admin/geofence-events', { limit: 20 }).then((r) => setEvents(r.items)).catch(() => setEvents(null));
  useEffect(() => {
    load();
    loadEvents();
  }, []);
  useFeed((ev) => {
    if (typeof ev.type === 'string' && ev.type.startsWith('geofence')) loadEvents();
  });
  useReconnect(() => {
    load();
    loadEvents();
  });

  // draw the fences
  useEffect(() => {
    const map = mapRef.current;
    if (!map || !fences) return;
    if (layer.current) layer.current.remove();
    layersById.current = new Map();
    const group = L.featureGroup();
    for (const f of fences) {
      const l = fenceLayer(f.geometry);
      if (!l) continue;
      l.bindTooltip(textContent(f.name, f.imeis && f.imeis.length ? `${f.imeis.length} devices` : 'All devices'));
      group.addLayer(l);
      layersById.current.set(f.id, l);
    }
    group.addTo(map);
    layer.current = group;
    if (fences.length) fitTo(map, group.getBounds(), 14);
  }, [fences]);

  // the draft being drawn
  useEffect(() => {
    const map = mapRef.current;
    if (!map) return;
    if (draftLayer.current) draftLayer.current.remove();
    draftLayer.current = null;
    if (!draft) return;
    const style = { color: COLORS.alarm, weight: 2, dashArray: '6 4', fillOpacity: 0.1 };
    const group = L.layerGroup();
    if (draft.mode === 'circle' && draft.center) {
      group.addLayer(L.circleMarker(draft.center, { radius: 4, color: COLORS.alarm }));
      if (draft.radius > 0) group.addLayer(L.circle(draft.center, { ...style, radius: draft.radius }));
    }
    if (draft.mode === 'polygon' && draft.points.length) {
      draft.points.forEach((p) => group.addLayer(L.circleMarker(p, { radius: 4, color: COLORS.alarm })));
      group.addLayer(draft.points.length > 2 ? L.polygon(draft.points, style) : L.polyline(draft.points, style));
    }
    group.addTo(map);
    draftLayer.current = group;
  }, [draft]);

  const onMap = (map) => {
    mapRef.current = map;
    map.on('click', (e) => {
      const d = draftRef.current;
      if (!d) return;
      const ll = [e.latlng.lat, e.latlng.lng];
      if (d.mode === 'circle') {
        if (!d.center || d.radius > 0) setDraft({ ...d, center: ll, radius: 0 });
        else setDraft({ ...d, radius: Math.round(map.distance(d.center, e.latlng)) });
      } else if (d.mode === 'polygon') {
        setDraft({ ...d, points: [...d.points, ll] });
      }
    });
    setFences((f) => (f ? [...f] : f)); // draw what was loaded before the map existed
  };

  const focus = (f) => {
    const l = layersById.current.get(f.id);
    if (l && mapRef.current) fitTo(mapRef.current, l.getBounds(), 16);
  };

  if (missing) {
    return (
      <div class="page-col">
        <div class="toolbar"><h2>Geofences</h2></div>
        <section class="table-wrap narrow"><div class="info-box">This server does not have geofences yet.</div></section>
      </div>
    );
  }

  return (
    <div class="split split-right">
      <section class={`map-wrap ${draft ? 'drawing' : ''}`}>
        <MapView onReady={onMap} />
        {draft && draft.mode !== 'geojson' ? (
          <div class="map-hint">
            {draft.mode === 'circle'
              ? (!draft.center ? 'Click the centre of the circle.' : !draft.radius ? 'Click a point on its edge.' : `Radius ${fmtNumber(draft.radius)} m. Click again to start over.`)
              : `${draft.points.length} points. Click to add corners.`}
          </div>
        ) : null}
      </section>
      <aside class="detail-panel">
        <h2>Geofences</h2>
        <ErrorText error={error} />
        {fences === null && !error ? <p class="muted">Loading…</p> : null}
        {fences && !fences.length ? <Empty>No geofence yet.</Empty> : null}
        {fences && fences.length ? (
          <ul class="mini-list">
            {fences.map((f) => (
              <li key={f.id} class="fence-row">
                <button type="button" class="link-row" onClick={() => focus(f)}>
                  <strong>{f.name}</strong>
                  <span class="muted small">{humanize((f.geometry || {}).type)} · {f.imeis && f.imeis.length ? `${f.imeis.length} devices` : 'all devices'}</span>
                </button>
                {admin ? <DeleteFence fence={f} onDone={load} /> : null}
              </li>
            ))}
          </ul>
        ) : null}
        {admin ? <CreateFence draft={draft} setDraft={setDraft} onDone={() => {
          setDraft(null);
          load();
        }} /> : null}
        <h3>Recent crossings</h3>
        {events === null ? <p class="muted small">None to show.</p> : null}
        {events && !events.length ? <p class="muted small">No device has crossed a fence yet.</p> : null}
        {events && events.length ? (
          <ul class="mini-list">
            {events.map((e) => (
              <li key={e.id} class="crossing">
                <span class={`badge ${e.transition === 'enter' ? 'badge-info' : 'badge-warn'}`}>{humanize(e.transition)}</span>
                <span class="crossing-text">
                  <span><strong>{fleet.label(e.imei)}</strong> · {(fences || []).find((f) => f.id === e.geofence_id)?.name || 'a fence'}</span>
                  <span class="muted small">{fmtTime(e.ts)}</span>
                </span>
              </li>
            ))}
          </ul>
        ) : null}
      </aside>
    </div>
  );
}

function DeleteFence({ fence, onDone }) {
  const [confirm, setConfirm] = useState(false);
  const [busy, run] = useAction();
  if (!confirm) return <button type="button" class="btn btn-small btn-danger-ghost" onClick={() => setConfirm(true)}>Delete</button>;
  return (
    <span class="btn-row-tight">
      <button type="button" class="btn btn-small btn-danger" disabled={busy}
        onClick={() => run(() => del(adminPath('geofences', fence.id)), 'Geofence deleted').then(onDone)}>Delete</button>
      <button type="button" class="btn btn-small btn-ghost" onClick={() => setConfirm(false)}>Keep</button>
    </span>
  );
}

/** Geometry of the draft as the API takes it, or an error message. */
function geometryOf(draft, text, lat, lon, radius) {
  if (draft.mode === 'circle') {
    const c = draft.center || (lat !== '' && lon !== '' ? [Number(lat), Number(lon)] : null);
    const r = draft.radius || Number(radius);
    if (!c || !(r > 0)) return { error: 'Click a centre and an edge on the map, or enter the centre and radius.' };
    return { geometry: { type: 'Circle', center: [c[1], c[0]], radius_m: r } };
  }
  if (draft.mode === 'polygon') {
    if (draft.points.length < 3) return { error: 'A polygon needs at least three corners.' };
    const ring = draft.points.map(([la, lo]) => [lo, la]);
    ring.push(ring[0]);
    return { geometry: { type: 'Polygon', coordinates: [ring] } };
  }
  try {
    const g = JSON.parse(text);
    const geometry = g.type === 'Feature' ? g.geometry : g;
    if (!geometry || !['Polygon', 'MultiPolygon', 'Circle'].includes(geometry.type)) {
      return { error: 'Enter a GeoJSON Polygon or MultiPolygon, or {"type": "Circle", "center": [lon, lat], "radius_m": R}.' };
    }
    return { geometry };
  } catch {
    return { error: 'This is not valid JSON.' };
  }
}

function CreateFence({ draft, setDraft, onDone }) {
  const [name, setName] = useState('');
  const [imeis, setImeis] = useState('');
  const [text, setText] = useState('');
  const [lat, setLat] = useState('');
  const [lon, setLon] = useState('');
  const [radius, setRadius] = useState('');
  const [error, setError] = useState(null);
  const [busy, run] = useAction();

  if (!draft) {
    return (
      <div class="create-fence">
        <h3>New geofence</h3>
        <div class="btn-row">
          <button type="button" class="btn" onClick={() => setDraft({ mode: 'circle', points: [], center: null, radius: 0 })}>Circle</button>
          <button type="button" class="btn" onClick={() => setDraft({ mode: 'polygon', points: [] })}>Polygon</button>
          <button type="button" class="btn" onClick={() => setDraft({ mode: 'geojson', points: [] })}>GeoJSON</button>
        </div>
      </div>
    );
  }

  const submit = (e) => {
    e.preventDefault();
    const g = geometryOf(draft, text, lat, lon, radius);
    if (g.error) {
      setError(new Error(g.error));
      return;
    }
    const list = imeis.split(/[\s,]+/).filter(Boolean);
    run(async () => {
      await post('/api/v1/admin/geofences', { name: name.trim(), geometry: g.geometry, ...(list.length ? { imeis: list } : {}) });
      onDone();
    }, 'Geofence created');
  };

  return (
    <form class="form create-fence" onSubmit={submit}>
      <h3>New geofence: {humanize(draft.mode)}</h3>
      <label>Name<input required maxLength={128} value={name} onInput={(e) => setName(e.target.value)} /></label>
      {draft.mode === 'circle' && !draft.center ? (
        <div class="row3">
          <label>Latitude<input type="number" step="any" min="-90" max="90" value={lat} onInput={(e) => setLat(e.target.value)} /></label>
          <label>Longitude<input type="number" step="any" min="-180" max="180" value={lon} onInput={(e) => setLon(e.target.value)} /></label>
          <label>Radius (m)<input type="number" min="1" value={radius} onInput={(e) => setRadius(e.target.value)} /></label>
        </div>
      ) : null}
      {draft.mode === 'polygon' ? (
        <div class="btn-row">
          <button type="button" class="btn btn-small" disabled={!draft.points.length} onClick={() => setDraft({ ...draft, points: draft.points.slice(0, -1) })}>Undo corner</button>
        </div>
      ) : null}
      {draft.mode === 'geojson' ? (
        <label>Geometry (GeoJSON)<textarea class="mono" rows="6" value={text} onInput={(e) => setText(e.target.value)}
          placeholder={'{"type": "Circle", "center": [13.4, 52.5], "radius_m": 500}'} /></label>
      ) : null}
      <label>Devices <span class="muted small">(IMEIs; empty: every device)</span><input value={imeis} onInput={(e) => setImeis(e.target.value)} /></label>
      <ErrorText error={error} />
      <div class="btn-row">
        <button type="submit" class="btn btn-primary" disabled={busy}>Create</button>
        <button type="button" class="btn btn-ghost" onClick={() => setDraft(null)}>Cancel</button>
      </div>
    </form>
  );
}
