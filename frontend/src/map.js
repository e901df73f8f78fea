// Leaflet set-up shared by every map: tiles from the URL the server puts in
// <meta name="truckx-tile-url">, canvas rendering (1,000 markers stay cheap), and a plain background
// with a notice when no tile loads (devices and tracks are drawn all the same).
import L from 'leaflet';

export const DEFAULT_TILE_URL = 'https://tile.openstreetmap.org/{z}/{x}/{y}.png';
L.Icon.Default.imagePath = '/static/images/';

export const COLORS = {
  online: '#16a34a',
  offline: '#94a3b8',
  disabled: '#475569',
  alarm: '#dc2626',
  track: '#2563eb',
  selected: '#0f172a',
  fence: '#7c3aed',
};

export function tileUrl() {
  const meta = document.querySelector('meta[name="truckx-tile-url"]');
  const value = meta ? (meta.getAttribute('content') || '').trim() : '';
  if (!value || value.includes('{{') || !/^https?:\/\//i.test(value) && !value.startsWith('/')) return DEFAULT_TILE_URL;
  return value;
}

/** A Leaflet map in `el` with the tile layer; `options` go to L.map. */
export function createMap(el, options = {}) {
  const map = L.map(el, {
    preferCanvas: true,
    worldCopyJump: true,
    minZoom: 2,
    zoomSnap: 0.5,
    ...options,
  });
  const url = tileUrl();
  const tiles = L.tileLayer(url, {
    maxZoom: 19,
    crossOrigin: false,
    attribution: url === DEFAULT_TILE_URL ? '&copy; OpenStreetMap contributors' : '',
  });
  let loaded = 0;
  let failed = 0;
  let notice = null;
  tiles.on('tileload', () => {
    loaded += 1;
    if (notice) {
      notice.remove();
      notice = null;
    }
  });
  tiles.on('tileerror', () => {
    failed += 1;
    if (!loaded && failed >= 2 && !notice) {
      notice = L.DomUtil.create('div', 'map-notice', map.getContainer());
      notice.textContent = 'Map tiles cannot be loaded: positions are drawn on a plain background.';
    }
  });
  tiles.addTo(map);
  map.attributionControl.setPrefix(false);
  map.setView([20, 0], 2);
  return map;
}

export function deviceColor(d) {
  if (!d.enabled) return COLORS.disabled;
  return d.online ? COLORS.online : COLORS.offline;
}

/** A text-only Leaflet tooltip/popup body (never HTML from data: names are user input). */
export function textContent(...lines) {
  const el = document.createElement('div');
  lines.filter(Boolean).forEach((line, i) => {
    const row = document.createElement(i === 0 ? 'strong' : 'div');
    row.textContent = line;
    el.appendChild(row);
  });
  return el;
}

/** Leaflet geometry for a geofence: GeoJSON Polygon/MultiPolygon, or {type: 'Circle', center, radius_m}. */
export function fenceLayer(geometry, style = {}) {
  const opts = { color: COLORS.fence, weight: 2, fillOpacity: 0.12, ...style };
  if (!geometry) return null;
  if (geometry.type === 'Circle' && Array.isArray(geometry.center)) {
    return L.circle([geometry.center[1], geometry.center[0]], { ...opts, radius: geometry.radius_m });
  }
  if (geometry.type === 'Polygon' || geometry.type === 'MultiPolygon') {
    return L.geoJSON(geometry, { style: () => opts });
  }
  return null;
}

/** Fit the map to the layers' bounds (if any), without zooming in past `maxZoom`. */
export function fitTo(map, bounds, maxZoom = 15) {
  if (bounds && bounds.isValid && bounds.isValid()) map.fitBounds(bounds.pad(0.1), { maxZoom, animate: false });
}

export { L };
