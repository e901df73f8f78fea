// Small pure helpers (no DOM, no network): times, IMEIs, query strings, roles. Tested by test/util.test.js.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** An RFC 3339 time as the browser's local time, `2026-11-28 10:15:03`; '' for null. */
export function fmtTime(iso, { seconds = true } = {}) {
  if (!iso) return '';
  const d = iso instanceof Date ? iso : new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ''}`;
  return `${day} ${time}`;
}

/** How long ago, short: `now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`. */
export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(s)) return '';
  if (s < 5) return 'now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Seconds as `1 h 05 min`, `12 min 30 s`, `45 s`. */
export function fmtDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

export function fmtBytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtNumber(n, digits = 0) {
  return n == null || Number.isNaN(n) ? '' : Number(n).toFixed(digits);
}

/** The value of an `<input type="datetime-local">` for a time (local wall clock, minutes). */
export function toLocalInput(date) {
  if (!date) return '';
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An `<input type="datetime-local">` value (local wall clock) as RFC 3339 UTC; null when empty or invalid. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** True for 15 digits whose last is the Luhn check digit of the first 14 (the API's IMEI rule). */
export function validImei(s) {
  if (!/^[0-9]{15}$/.test(s)) return false;
  let sum = 0;
  for (let i = 0; i < 14; i++) {
    let d = s.charCodeAt(i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10 === s.charCodeAt(14) - 48;
}

/** `?a=1&b=x&b=y` from `{a: 1, b: ['x', 'y']}`; null, undefined, '' and [] are left out. */
export function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null || v === '') continue;
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item != null && item !== '') q.append(k, String(item));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** `#/alarms?imei=1` as `{path: 'alarms', params: {imei: '1'}}`. */
export function parseHash(hash) {
  const h = (hash || '').replace(/^#\/?/, '');
  const i = h.indexOf('?');
  const path = (i < 0 ? h : h.slice(0, i)) || '';
  const params = {};
  for (const [k, v] of new URLSearchParams(i < 0 ? '' : h.slice(i + 1))) params[k] = v;
  return { path, params };
}

export function hashFor(path, params) {
  return `#/${path}${queryString(params)}`;
}

/** What each role may change (the API refuses the rest anyway; the console hides those buttons). */
const CAN = {
  'alarm.ack': ['admin', 'operator'],
  'command.send': ['admin', 'operator'],
  admin: ['admin'],
};

export function can(role, action) {
  return (CAN[action] || []).includes(role);
}

/** Index of the last item whose time is <= t in items sorted by time (binary search); -1 before the first. */
export function indexAtTime(times, t) {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || t < times[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Position at time t along points [{t, lat, lon}] (sorted), interpolated linearly between two fixes. */
export function positionAt(points, times, t) {
  const i = indexAtTime(times, t);
  if (i < 0) return points.length ? { ...points[0], index: 0 } : null;
  const a = points[i];
  const b = points[i + 1];
  if (!b || times[i + 1] === times[i]) return { ...a, index: i };
  const f = (t - times[i]) / (times[i + 1] - times[i]);
  return { ...a, lat: a.lat + (b.lat - a.lat) * f, lon: a.lon + (b.lon - a.lon) * f, index: i };
}

/** The host part of a tile URL template for the CSP (`https://{s}.tile.x/{z}/...` -> `https://*.tile.x`). */
export function tileOrigin(template) {
  const m = /^(https?:\/\/[^/]+)/i.exec(template || '');
  return m ? m[1].replace(/\{s\}/g, '*') : null;
}

export const ALARM_TYPES = ['CRASH', 'OVERSPEED', 'HARD_BRAKE', 'HARD_ACCELERATION', 'SHARP_TURN', 'VIBRATION'];
export const ALARM_STATUSES = ['active', 'acknowledged', 'cleared'];
export const COMMAND_STATUSES = ['queued', 'sent', 'succeeded', 'failed', 'expired', 'cancelled'];
export const WEBHOOK_EVENTS = ['alarm.created', 'alarm.acknowledged', 'alarm.cleared', 'device.online',
  'device.offline', 'geofence.enter', 'geofence.exit', 'command.finished', 'video.uploaded'];

export function humanize(s) {
  return String(s || '').toLowerCase().replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}
