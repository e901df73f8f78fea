// Track: a device's path over a time window (every page of /locations), its alarms as markers, the
// trips of the window when the server has them, and playback moving the truck along the path.
import { useEffect, useRef, useState } from 'preact/hooks';
import { adminPath, allPages, get, missingEndpoint } from '../api.js';
import { COLORS, fitTo, L, textContent } from '../map.js';
import {
  fmtDuration, fmtNumber, fmtTime, fromLocalInput, humanize, indexAtTime, positionAt, toLocalInput,
} from '../util.js';
import { AlarmType, DevicePicker, Empty, ErrorText, MapView, useApp, useFleetMembership } from '../components/ui.jsx';

const MAX_POINTS = 200000;
const PRESETS = [['1 h', 3600], ['6 h', 6 * 3600], ['24 h', 86400], ['7 d', 7 * 86400]];
const SPEEDS = [1, 10, 60, 300, 1800];

function windowFrom(params) {
  const until = params.until ? new Date(params.until) : new Date();
  const since = params.since ? new Date(params.since) : new Date(until.getTime() - 3600 * 1000);
  return { since: toLocalInput(since), until: toLocalInput(until) };
}

export function Track({ params }) {
  const { navigate, fleet } = useApp();
  useFleetMembership(fleet);
  const [imei, setImei] = useState(params.imei || '');
  const [win, setWin] = useState(() => windowFrom(params));
  const [state, setState] = useState({ status: 'idle' });
  const [t, setT] = useState(null);
  const tRef = useRef(null);
  tRef.current = t;
  const [playing, setPlaying] = useState(false);
  const [speed, setSpeed] = useState(60);
  const [activeTrip, setActiveTrip] = useState(null);
  const mapRef = useRef(null);
  const layers = useRef({});
  const abort = useRef(null);
  const data = state.data;

  // load whenever the route names a device and window (the form navigates; links from the map too)
  useEffect(() => {
    if (!params.imei) return;
    setImei(params.imei);
    const w = windowFrom(params);
    setWin(w);
    load(params.imei, fromLocalInput(w.since), fromLocalInput(w.until));
  }, [params.imei, params.since, params.until]);

  useEffect(() => () => abort.current && abort.current.abort(), []);

  const submit = (e) => {
    e.preventDefault();
    const since = fromLocalInput(win.since);
    const until = fromLocalInput(win.until);
    if (!imei.trim()) return;
    if (since && until && since >= until) {
      setState({ status: 'error', error: new Error('The window must end after it starts.') });
      return;
    }
    if (params.imei === imei && params.since === since && params.until === until) load(imei, since, until);
    else navigate('track', { imei, since, until });
  };

  const preset = (seconds) => {
    const until = new Date();
    setWin({ since: toLocalInput(new Date(until.getTime() - seconds * 1000)), until: toLocalInput(until) });
  };

  async function load(dev, since, until) {
    if (abort.current) abort.current.abort();
    const ctl = new AbortController();
    abort.current = ctl;
    setPlaying(false);
    setActiveTrip(null);
    setState({ status: 'loading', loaded: 0 });
    try {
      const q = { since, until };
      const track = await allPages(adminPath('devices', dev, 'locations'), q, {
        max: MAX_POINTS,
        signal: ctl.signal,
        onPage: (_, n) => setState({ status: 'loading', loaded: n }),
      });
      const alarms = await allPages('/api/v1/admin/alarms', { imei: dev, since, until }, { max: 5000, signal: ctl.signal });
      let trips = null;
      let tripsNote = null;
      try {
        trips = (await get(adminPath('devices', dev, 'trips'), q, { signal: ctl.signal })).items || [];
      } catch (err) {
        if (err.name === 'AbortError') throw err;
        tripsNote = missingEndpoint(err) ? 'This server does not compute trips yet.' : err.message;
      }
      const points = track.items.map((p) => ({ ...p, t: Date.parse(p.ts) }));
      const times = points.map((p) => p.t);
      setState({
        status: 'done',
        data: { imei: dev, since, until, points, times, alarms: alarms.items, trips, tripsNote, truncated: track.truncated },
      });
      setT(points.length ? times[0] : null);
    } catch (err) {
      if (err.name !== 'AbortError') setState({ status: 'error', error: err });
    }
  }

  // -- drawing -------------------------------------------------------------------------------------
  const draw = () => {
    const map = mapRef.current;
    if (!map) return;
    for (const l of Object.values(layers.current)) l && l.remove();
    layers.current = {};
    if (!data || !data.points.length) return;
    const latlngs = data.points.map((p) => [p.lat, p.lon]);
    const line = L.polyline(latlngs, { color: COLORS.track, weight: 4, opacity: 0.85 }).addTo(map);
    const first = data.points[0];
    const last = data.points[data.points.length - 1];
    const ends = L.layerGroup([
      L.circleMarker([first.lat, first.lon], { radius: 7, color: '#fff', weight: 2, fillColor: '#16a34a', fillOpacity: 1 })
        .bindTooltip(textContent('Start', fmtTime(first.ts))),
      L.circleMarker([last.lat, last.lon], { radius: 7, color: '#fff', weight: 2, fillColor: '#0f172a', fillOpacity: 1 })
        .bindTooltip(textContent('End', fmtTime(last.ts))),
    ]).addTo(map);
    const alarms = L.layerGroup(data.alarms.map((a) => L.circleMarker([a.lat, a.lon], {
      radius: 7, color: '#fff', weight: 2, fillColor: COLORS.alarm, fillOpacity: 1,
    }).bindTooltip(textContent(humanize(a.type), fmtTime(a.ts), humanize(a.status)))
      .on('click', () => navigate('alarms', { imei: data.imei, id: a.id })))).addTo(map);
    const truck = L.circleMarker([first.lat, first.lon], {
      radius: 9, color: '#fff', weight: 3, fillColor: '#f59e0b', fillOpacity: 1,
    }).addTo(map);
    layers.current = { line, ends, alarms, truck, trip: null };
    fitTo(map, line.getBounds(), 16);
  };

  const onMap = (map) => {
    mapRef.current = map;
    draw();
  };
  useEffect(draw, [data]);

  // trip highlight
  useEffect(() => {
    const map = mapRef.current;
    if (!map || !data) return;
    if (layers.current.trip) layers.current.trip.remove();
    layers.current.trip = null;
    if (!activeTrip) return;
    const t0 = Date.parse(activeTrip.start);
    const t1 = Date.parse(activeTrip.end);
    const seg = data.points.filter((p) => p.t >= t0 && p.t <= t1).map((p) => [p.lat, p.lon]);
    if (seg.length < 2) return;
    layers.current.trip = L.polyline(seg, { color: '#f97316', weight: 6, opacity: 0.9 }).addTo(map);
    layers.current.truck && layers.current.truck.bringToFront();
    fitTo(map, layers.current.trip.getBounds(), 16);
    setT(t0);
  }, [activeTrip]);

  // playback: the truck marker follows t
  const pos = data && t != null ? positionAt(data.points, data.times, t) : null;
  useEffect(() => {
    if (pos && layers.current.truck) layers.current.truck.setLatLng([pos.lat, pos.lon]);
  }, [pos && pos.lat, pos && pos.lon]);

  useEffect(() => {
    if (!playing || !data || !data.points.length) return undefined;
    let raf;
    let last = performance.now();
    const end = data.times[data.times.length - 1];
    const step = (now) => {
      const next = Math.min(end, (tRef.current ?? data.times[0]) + (now - last) * speed);
      last = now;
      tRef.current = next;
      setT(next);
      if (next >= end) setPlaying(false);
      else raf = requestAnimationFrame(step);
    };
    raf = requestAnimationFrame(step);
    return () => cancelAnimationFrame(raf);
  }, [playing, speed, data]);

  const play = () => {
    if (data && t != null && t >= data.times[data.times.length - 1]) setT(data.times[0]);
    setPlaying(!playing);
  };

  const distanceKm = data ? trackKm(data.points) : 0;
  const current = pos ? data.points[Math.max(0, indexAtTime(data.times, t))] : null;

  return (
    <div class="split">
      <aside class="sidebar sidebar-wide">
        <form class="panel-form" onSubmit={submit}>
          <label>Device<DevicePicker value={imei} onChange={setImei} required /></label>
          <div class="row-stack">
            <label>From<input type="datetime-local" value={win.since} required
              onInput={(e) => setWin({ ...win, since: e.target.value })} /></label>
            <label>To<input type="datetime-local" value={win.until} required
              onInput={(e) => setWin({ ...win, until: e.target.value })} /></label>
          </div>
          <div class="presets">
            <span class="muted small">Last</span>
            {PRESETS.map(([label, s]) => (
              <button key={label} type="button" class="chip" onClick={() => preset(s)}>{label}</button>
            ))}
          </div>
          <button type="submit" class="btn btn-primary btn-block" disabled={state.status === 'loading'}>
            {state.status === 'loading' ? `Loading… ${state.loaded} points` : 'Show track'}
          </button>
        </form>
        {state.status === 'error' ? <ErrorText error={state.error} /> : null}
        {state.status === 'idle' ? <Empty>Choose a device and a time window.</Empty> : null}
        {data ? (
          <div class="track-summary">
            <h2>{fleet.label(data.imei)}</h2>
            <p class="muted small">{fmtTime(data.since)} – {fmtTime(data.until)}</p>
            {data.truncated ? <div class="info-box">Only the first {MAX_POINTS.toLocaleString()} points are drawn: choose a shorter window.</div> : null}
            <div class="stats stats-small">
              <div><strong>{data.points.length.toLocaleString()}</strong><span>points</span></div>
              <div><strong>{fmtNumber(distanceKm, 1)}</strong><span>km</span></div>
              <div><strong>{data.alarms.length}</strong><span>alarms</span></div>
            </div>
            {!data.points.length ? <Empty>No positions in this window.</Empty> : null}
            <h3>Trips</h3>
            {data.tripsNote ? <p class="muted small">{data.tripsNote}</p> : null}
            {data.trips && !data.trips.length ? <p class="muted small">No trips in this window.</p> : null}
            {data.trips && data.trips.length ? (
              <ul class="mini-list trips">
                {data.trips.map((trip) => (
                  <li key={trip.start}>
                    <button type="button" class={`trip ${activeTrip === trip ? 'on' : ''}`}
                      onClick={() => setActiveTrip(activeTrip === trip ? null : trip)}>
                      <span>{fmtTime(trip.start, { seconds: false })} → {fmtTime(trip.end, { seconds: false }).slice(11)}</span>
                      <span class="muted small">
                        {fmtDuration(trip.duration_s)} · {fmtNumber(trip.distance_km, 1)} km · max {fmtNumber(trip.max_speed_kmh)} km/h
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
            ) : null}
            <h3>Alarms</h3>
            {!data.alarms.length ? <p class="muted small">No alarms in this window.</p> : (
              <ul class="mini-list">
                {data.alarms.slice(0, 200).map((a) => (
                  <li key={a.id}>
                    <button type="button" class="link-row" onClick={() => {
                      setT(Date.parse(a.ts));
                      mapRef.current && mapRef.current.panTo([a.lat, a.lon]);
                    }}>
                      <AlarmType type={a.type} /> <span class="small">{fmtTime(a.ts)}</span>
                    </button>
                    <a class="small" href={`#/alarms?imei=${data.imei}&id=${a.id}`}>open</a>
                  </li>
                ))}
              </ul>
            )}
          </div>
        ) : null}
      </aside>
      <section class="map-wrap">
        <MapView onReady={onMap} />
        {data && data.points.length ? (
          <div class="playback">
            <button type="button" class="btn btn-primary play" onClick={play} aria-label={playing ? 'Pause' : 'Play'}>
              {playing ? '❚❚' : '▶'}
            </button>
            <input type="range" class="slider" aria-label="Playback time" min={data.times[0]}
              max={data.times[data.times.length - 1]} step="1000" value={t ?? data.times[0]}
              onInput={(e) => {
                setPlaying(false);
                setT(Number(e.target.value));
              }} />
            <select value={speed} aria-label="Playback speed" onChange={(e) => setSpeed(Number(e.target.value))}>
              {SPEEDS.map((s) => <option key={s} value={s}>{s}×</option>)}
            </select>
            <div class="readout">
              <strong>{fmtTime(new Date(t ?? data.times[0]))}</strong>
              <span class="muted small">
                {current && current.speed_kmh != null ? `${fmtNumber(current.speed_kmh)} km/h` : ''}
              </span>
            </div>
          </div>
        ) : null}
      </section>
    </div>
  );
}

/** Length of a track in km (haversine; the trips' own distances come from the server). */
function trackKm(points) {
  let km = 0;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const r = Math.PI / 180;
    const dLat = (b.lat - a.lat) * r;
    const dLon = (b.lon - a.lon) * r;
    const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * r) * Math.cos(b.lat * r) * Math.sin(dLon / 2) ** 2;
    km += 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(h)));
  }
  return km;
}
