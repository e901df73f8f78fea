// Fleet map: every device at its last position (canvas circle markers), coloured by status, moving
// with the events feed. The side panel lists the fleet, or the selected device's details.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { allPages, get, missingEndpoint } from '../api.js';
import { COLORS, deviceColor, fenceLayer, fitTo, L, textContent } from '../map.js';
import { can, fmtAgo, fmtNumber, fmtTime } from '../util.js';
import {
  AlarmStatus, AlarmType, DeviceStatus, Empty, MapView, StatusDot, Time, useApp, useFeed, useFleet, useTicker,
} from '../components/ui.jsx';

const LIST_LIMIT = 300;
const AUTO_LABELS_MAX = 40;
const AUTO_LABELS_ZOOM = 7;

export function FleetMap({ params }) {
  const { fleet, navigate, toast } = useApp();
  useFleet(fleet);
  useTicker(15000);
  const selected = params.imei || null;
  const [query, setQuery] = useState('');
  const [filter, setFilter] = useState('all');
  const [labels, setLabels] = useState(null); // null: automatic
  const [autoLabels, setAutoLabels] = useState(false);
  const [showFences, setShowFences] = useState(false);
  const mapRef = useRef(null);
  const markers = useRef(new Map());
  const fitted = useRef(false);

  const devices = fleet.list();
  const showLabels = labels ?? autoLabels;
  const online = devices.filter((d) => d.online && d.enabled).length;
  const positioned = devices.filter((d) => d.last_location).length;

  const select = (imei) => navigate('map', imei ? { imei } : {}, { replace: true });

  // -- markers: created, moved and restyled from the store's change sets ---------------------------
  const styleFor = (d) => {
    const isSel = d.imei === selected;
    return {
      radius: isSel ? 9 : 6.5,
      color: isSel ? COLORS.selected : '#ffffff',
      weight: isSel ? 3 : 1.5,
      fillColor: deviceColor(d),
      fillOpacity: 1,
    };
  };

  const syncMarker = (d) => {
    const map = mapRef.current;
    if (!map) return;
    let m = markers.current.get(d.imei);
    const p = d.last_location;
    if (!p) {
      if (m) {
        m.remove();
        markers.current.delete(d.imei);
      }
      return;
    }
    if (!m) {
      m = L.circleMarker([p.lat, p.lon], styleFor(d));
      m.on('click', () => select(d.imei));
      m.addTo(map);
      markers.current.set(d.imei, m);
      m._label = null;
    } else {
      const ll = m.getLatLng();
      if (ll.lat !== p.lat || ll.lng !== p.lon) m.setLatLng([p.lat, p.lon]);
      m.setStyle(styleFor(d));
    }
    const label = d.name || d.imei;
    const mode = showLabels ? 'permanent' : 'hover';
    if (m._label !== label || m._labelMode !== mode) {
      m.unbindTooltip();
      m.bindTooltip(textContent(label), showLabels
        ? { permanent: true, direction: 'right', offset: [8, 0], className: 'marker-label' }
        : { direction: 'top', offset: [0, -6] });
      m._label = label;
      m._labelMode = mode;
    }
  };

  const syncAll = () => {
    const seen = new Set();
    for (const d of fleet.list()) {
      seen.add(d.imei);
      syncMarker(d);
    }
    for (const [imei, m] of markers.current) {
      if (!seen.has(imei)) {
        m.remove();
        markers.current.delete(imei);
      }
    }
  };

  const fitFleet = () => {
    const pts = fleet.list().filter((d) => d.last_location).map((d) => [d.last_location.lat, d.last_location.lon]);
    if (pts.length) fitTo(mapRef.current, L.latLngBounds(pts), 13);
  };

  // names on the map: automatic (on when few markers are in view and zoomed in), or as the user chose
  const countLabels = () => {
    const map = mapRef.current;
    if (!map) return;
    const b = map.getBounds();
    let n = 0;
    for (const m of markers.current.values()) if (b.contains(m.getLatLng()) && ++n > AUTO_LABELS_MAX) break;
    setAutoLabels(map.getZoom() >= AUTO_LABELS_ZOOM && n <= AUTO_LABELS_MAX);
  };

  const fitOnce = () => {
    if (fitted.current || !mapRef.current || !fleet.loaded) return;
    if (!fleet.list().some((d) => d.last_location)) return;
    fitted.current = true;
    const m = selected && markers.current.get(selected);
    if (m) mapRef.current.setView(m.getLatLng(), 11, { animate: false });
    else fitFleet();
  };

  useEffect(() => fleet.subscribe((changed) => {
    if (!mapRef.current) return;
    if (changed === null) {
      syncAll();
      countLabels();
    } else for (const imei of changed) {
      const d = fleet.get(imei);
      if (d) syncMarker(d);
    }
    fitOnce();
  }), [fleet, selected, showLabels]);

  // read-only hook for browser tests: the markers drawn on the canvas (they have no DOM elements)
  useEffect(() => {
    window.truckxConsole = {
      markers: () => [...markers.current].map(([imei, m]) => {
        const ll = m.getLatLng();
        const d = fleet.get(imei);
        return { imei, lat: ll.lat, lon: ll.lng, color: m.options.fillColor, online: !!(d && d.online) };
      }),
    };
    return () => {
      delete window.truckxConsole;
    };
  }, []);

  const onMap = (map) => {
    mapRef.current = map;
    syncAll();
    fitOnce();
    countLabels();
    map.on('moveend', countLabels);
  };

  // restyle everything when the selection or label mode changes; centre on a newly selected device
  useEffect(() => {
    syncAll();
    const m = selected && markers.current.get(selected);
    if (m) {
      m.bringToFront();
      const map = mapRef.current;
      if (map && !map.getBounds().pad(-0.1).contains(m.getLatLng())) map.panTo(m.getLatLng());
    }
  }, [selected, showLabels]);

  useEffect(() => {
    const map = mapRef.current;
    if (!map) return undefined;
    if (!showFences) return undefined;
    let layer = null;
    let alive = true;
    allPages('/api/v1/admin/geofences', {}, { limit: 1000, max: 5000 }).then(({ items }) => {
      if (!alive) return;
      layer = L.layerGroup(items.map((f) => {
        const l = fenceLayer(f.geometry);
        if (l) l.bindTooltip(textContent(f.name));
        return l;
      }).filter(Boolean)).addTo(map);
    }).catch((err) => {
      if (alive) {
        setShowFences(false);
        toast(missingEndpoint(err) ? 'This server has no geofences yet.' : err.message, 'error');
      }
    });
    return () => {
      alive = false;
      if (layer) layer.remove();
    };
  }, [showFences]);

  // -- side list -------------------------------------------------------------------------------------
  const q = query.trim().toLowerCase();
  const shown = useMemo(() => devices
    .filter((d) => filter === 'all' || (filter === 'online' ? d.online && d.enabled : !(d.online && d.enabled)))
    .filter((d) => !q || d.imei.includes(q) || (d.name || '').toLowerCase().includes(q))
    .sort((a, b) => (b.online - a.online) || (a.name || a.imei).localeCompare(b.name || b.imei)),
  [devices, filter, q, fleet.devices.size, online]);

  const selectedDevice = selected ? fleet.get(selected) : null;

  return (
    <div class="split">
      <aside class="sidebar">
        {selectedDevice ? (
          <DeviceDetails device={selectedDevice} onBack={() => select(null)} />
        ) : (
          <>
            <div class="sidebar-head">
              <div class="stats">
                <div><strong>{devices.length}</strong><span>devices</span></div>
                <div class="stat-online"><strong>{online}</strong><span>online</span></div>
                <div class="stat-offline"><strong>{devices.length - online}</strong><span>offline</span></div>
              </div>
              <input type="search" placeholder="Search name or IMEI" value={query}
                onInput={(e) => setQuery(e.target.value)} aria-label="Search devices" />
              <div class="segmented" role="group" aria-label="Filter">
                {['all', 'online', 'offline'].map((f) => (
                  <button key={f} type="button" class={filter === f ? 'on' : ''} onClick={() => setFilter(f)}>
                    {f === 'all' ? 'All' : f === 'online' ? 'Online' : 'Offline'}
                  </button>
                ))}
              </div>
            </div>
            <ul class="device-list">
              {!fleet.loaded ? <li class="muted pad">Loading devices…</li> : null}
              {fleet.error ? <li class="error-box">{fleet.error.message}</li> : null}
              {fleet.loaded && !shown.length ? <li class="muted pad">No device matches.</li> : null}
              {shown.slice(0, LIST_LIMIT).map((d) => (
                <li key={d.imei}>
                  <button type="button" class="device-row" onClick={() => select(d.imei)}>
                    <StatusDot device={d} />
                    <span class="device-row-name">
                      <span class="name">{d.name || d.imei}</span>
                      {d.name ? <span class="imei">{d.imei}</span> : null}
                    </span>
                    <span class="device-row-meta">
                      {fleet.lastAlarm.get(d.imei) ? <span class="alarm-flag" title="Alarm since the page opened">!</span> : null}
                      <span class="muted small">{d.last_location ? fmtAgo(d.last_location.ts) : 'no position'}</span>
                    </span>
                  </button>
                </li>
              ))}
              {shown.length > LIST_LIMIT
                ? <li class="muted pad small">{shown.length - LIST_LIMIT} more: refine the search.</li> : null}
            </ul>
          </>
        )}
      </aside>
      <section class="map-wrap">
        <MapView onReady={onMap} />
        <div class="map-tools">
          <label class="check"><input type="checkbox" checked={showLabels} onChange={(e) => setLabels(e.target.checked)} /> Names</label>
          <label class="check"><input type="checkbox" checked={showFences} onChange={(e) => setShowFences(e.target.checked)} /> Geofences</label>
          <button type="button" class="btn btn-small" onClick={fitFleet} disabled={!positioned}>Whole fleet</button>
        </div>
        <div class="legend">
          <span><span class="dot dot-online" /> Online</span>
          <span><span class="dot dot-offline" /> Offline</span>
          <span><span class="dot dot-disabled" /> Disabled</span>
          <span class="muted">{positioned} of {devices.length} on the map</span>
        </div>
      </section>
    </div>
  );
}

function DeviceDetails({ device, onBack }) {
  const { role, navigate } = useApp();
  const [alarms, setAlarms] = useState(null);
  const [error, setError] = useState(null);
  const p = device.last_location;

  const load = () => get('/api/v1/admin/alarms', { imei: device.imei, limit: 5 })
    .then((r) => {
      setAlarms(r.items);
      setError(null);
    })
    .catch(setError);
  useEffect(() => {
    setAlarms(null);
    load();
  }, [device.imei]);
  useFeed((ev) => {
    if (ev.type === 'alarm' && ev.imei === device.imei) load();
  }, [device.imei]);

  return (
    <div class="details">
      <button type="button" class="link-btn" onClick={onBack}>← All devices</button>
      <div class="details-head">
        <h2>{device.name || device.imei}</h2>
        <DeviceStatus device={device} />
      </div>
      <dl class="kv">
        <dt>IMEI</dt><dd class="mono">{device.imei}</dd>
        <dt>Last seen</dt><dd>{device.last_seen ? <>{fmtAgo(device.last_seen)} <span class="muted small">({fmtTime(device.last_seen)})</span></> : 'never'}</dd>
        <dt>Position</dt><dd>{p ? `${fmtNumber(p.lat, 5)}, ${fmtNumber(p.lon, 5)}` : 'none reported'}</dd>
        {p ? <><dt>Fix time</dt><dd><Time iso={p.ts} /></dd></> : null}
        {p && p.speed_kmh != null ? <><dt>Speed</dt><dd>{fmtNumber(p.speed_kmh)} km/h</dd></> : null}
        {p && p.heading != null ? <><dt>Heading</dt><dd>{fmtNumber(p.heading)}°</dd></> : null}
        <dt>Registered</dt><dd><Time iso={device.created_at} /></dd>
      </dl>
      <div class="btn-row">
        <button type="button" class="btn btn-primary" onClick={() => navigate('track', { imei: device.imei })}>Track</button>
        <a class="btn" href={`#/alarms?imei=${device.imei}`}>Alarms</a>
        {can(role, 'command.send') ? <a class="btn" href={`#/commands?imei=${device.imei}`}>Send command</a> : null}
      </div>
      <h3>Recent alarms</h3>
      {error ? <div class="error-box">{error.message}</div> : null}
      {alarms === null && !error ? <p class="muted">Loading…</p> : null}
      {alarms && !alarms.length ? <Empty>No alarms.</Empty> : null}
      {alarms && alarms.length ? (
        <ul class="mini-list">
          {alarms.map((a) => (
            <li key={a.id}>
              <a href={`#/alarms?imei=${device.imei}&id=${a.id}`}>
                <AlarmType type={a.type} />
                <span class="small">{fmtTime(a.ts, { seconds: false })}</span>
                <AlarmStatus status={a.status} />
              </a>
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
