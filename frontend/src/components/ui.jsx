// Small shared pieces: app context, toasts, badges, modal, map container, device picker.
import { createContext } from 'preact';
import { useContext, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { createMap } from '../map.js';
import { fmtAgo, fmtTime, humanize } from '../util.js';

export const AppContext = createContext(null);
export const useApp = () => useContext(AppContext);

/**
 * Re-render when the fleet store announces changes, at most every `minMs` (lists and counts; the
 * map's markers follow the store directly and faster).
 */
export function useFleet(fleet, minMs = 1000) {
  const [, setTick] = useState(0);
  useEffect(() => {
    let last = 0;
    let timer = null;
    const bump = () => {
      last = Date.now();
      setTick((t) => t + 1);
    };
    const off = fleet.subscribe(() => {
      const wait = minMs - (Date.now() - last);
      if (wait <= 0) bump();
      else if (!timer) {
        timer = setTimeout(() => {
          timer = null;
          bump();
        }, wait);
      }
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [fleet, minMs]);
  return fleet;
}

/** Re-render when devices are added, removed or renamed (names in tables, device pickers). */
export function useFleetMembership(fleet) {
  const [, setSeen] = useState(fleet.membership);
  useEffect(() => fleet.subscribe(() => setSeen(fleet.membership)), [fleet]);
  return fleet.membership;
}

/** Re-render every `ms` (relative times). */
export function useTicker(ms = 10000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** Subscribe to the events feed for the component's life. */
export function useFeed(handler, deps = []) {
  const { feed } = useApp();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => feed.subscribe((ev) => ref.current(ev)), [feed, ...deps]);
}

export function useReconnect(handler) {
  const { feed } = useApp();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => feed.onReconnect(() => ref.current()), [feed]);
}

export function Toasts({ items, dismiss }) {
  return (
    <div class="toasts" role="status" aria-live="polite">
      {items.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`}>
          <span>{t.text}</span>
          <button type="button" class="toast-x" aria-label="Dismiss" onClick={() => dismiss(t.id)}>×</button>
        </div>
      ))}
    </div>
  );
}

export function StatusDot({ device }) {
  const state = !device.enabled ? 'disabled' : device.online ? 'online' : 'offline';
  return <span class={`dot dot-${state}`} title={humanize(state)} />;
}

export function DeviceStatus({ device }) {
  if (!device.enabled) return <span class="badge badge-muted">Disabled</span>;
  return device.online
    ? <span class="badge badge-ok">Online</span>
    : <span class="badge badge-off">Offline</span>;
}

export function AlarmStatus({ status }) {
  const cls = { active: 'badge-alarm', acknowledged: 'badge-warn', cleared: 'badge-muted' }[status] || 'badge-muted';
  return <span class={`badge ${cls}`}>{humanize(status)}</span>;
}

export function AlarmType({ type }) {
  const cls = { CRASH: 'type-crash', OVERSPEED: 'type-speed' }[type] || 'type-other';
  return <span class={`type ${cls}`}>{humanize(type)}</span>;
}

export function CommandStatus({ status }) {
  const cls = {
    queued: 'badge-info', sent: 'badge-warn', succeeded: 'badge-ok', failed: 'badge-alarm',
    expired: 'badge-muted', cancelled: 'badge-muted',
  }[status] || 'badge-muted';
  return <span class={`badge ${cls}`}>{humanize(status)}</span>;
}

export function Time({ iso, ago }) {
  if (!iso) return <span class="muted">–</span>;
  return <time dateTime={iso} title={fmtTime(iso)}>{ago ? fmtAgo(iso) : fmtTime(iso)}</time>;
}

export function Modal({ title, onClose, children, wide }) {
  useLayoutEffect(() => { // at once, so an Escape right after opening closes it
    const onKey = (e) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);
  return (
    <div class="modal-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class={`modal ${wide ? 'modal-wide' : ''}`} role="dialog" aria-modal="true" aria-label={title}>
        <div class="modal-head">
          <h2>{title}</h2>
          <button type="button" class="icon-btn" aria-label="Close" onClick={onClose}>×</button>
        </div>
        <div class="modal-body">{children}</div>
      </div>
    </div>
  );
}

/** A secret shown once, with a copy button. */
export function SecretBox({ label, value }) {
  const [copied, setCopied] = useState(false);
  const ref = useRef();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      ref.current.select();
    }
  };
  return (
    <div class="secret">
      <p class="warn-text">{label} It is shown only this once: store it now.</p>
      <div class="secret-row">
        <input ref={ref} readOnly value={value} class="mono" onFocus={(e) => e.target.select()} />
        <button type="button" class="btn" onClick={copy}>{copied ? 'Copied' : 'Copy'}</button>
      </div>
    </div>
  );
}

export function ErrorText({ error }) {
  if (!error) return null;
  return <div class="error-box">{error.message || String(error)}</div>;
}

export function Empty({ children }) {
  return <div class="empty">{children}</div>;
}

/** A Leaflet map filling its container; `onReady(map)` runs once after creation. */
export function MapView({ onReady, class: cls = '', options }) {
  const ref = useRef();
  useEffect(() => {
    const map = createMap(ref.current, options);
    const ro = new ResizeObserver(() => map.invalidateSize());
    ro.observe(ref.current);
    if (onReady) onReady(map);
    return () => {
      ro.disconnect();
      map.remove();
    };
  }, []);
  return <div ref={ref} class={`map ${cls}`} />;
}

let pickerIds = 0;

/**
 * Text input with the fleet's devices as suggestions (name and IMEI). `onChange(imei)` gets the
 * IMEI when the text is a device's IMEI or exact name, else the text.
 */
export function DevicePicker({ value, onChange, placeholder = 'Device name or IMEI', required, id }) {
  const { fleet } = useApp();
  const membership = useFleetMembership(fleet);
  const [listId] = useState(() => `devices-${++pickerIds}`);
  const [text, setText] = useState(() => (value ? labelFor(fleet, value) : ''));
  useEffect(() => {
    setText(value ? labelFor(fleet, value) : '');
  }, [value, membership]);
  const devices = fleet.list().sort((a, b) => (a.name || a.imei).localeCompare(b.name || b.imei)).slice(0, 2000);
  const resolve = (t) => {
    const s = t.trim();
    const byImei = s.match(/\b(\d{15})\b/);
    if (byImei && fleet.get(byImei[1])) return byImei[1];
    const byName = devices.find((d) => d.name && d.name.toLowerCase() === s.toLowerCase());
    return byName ? byName.imei : s;
  };
  return (
    <>
      <input id={id} list={listId} value={text} placeholder={placeholder} required={required} autocomplete="off"
        onInput={(e) => {
          setText(e.target.value);
          onChange(resolve(e.target.value));
        }} />
      <datalist id={listId}>
        {devices.map((d) => <option key={d.imei} value={d.name ? `${d.name} (${d.imei})` : d.imei} />)}
      </datalist>
    </>
  );
}

function labelFor(fleet, imei) {
  const d = fleet.get(imei);
  return d && d.name ? `${d.name} (${imei})` : imei;
}

export function DeviceName({ imei, link = true }) {
  const { fleet } = useApp();
  const d = fleet.get(imei);
  const name = d && d.name;
  const body = (
    <>
      {name ? <span>{name}</span> : null}
      <span class={name ? 'imei' : 'mono'}>{imei}</span>
    </>
  );
  return link ? <a class="device-name" href={`#/map?imei=${encodeURIComponent(imei)}`}>{body}</a> : <span class="device-name">{body}</span>;
}

/** Run an async action with a busy flag and a toast on failure. */
export function useAction() {
  const { toast } = useApp();
  const [busy, setBusy] = useState(false);
  const run = async (fn, okText) => {
    setBusy(true);
    try {
      const r = await fn();
      if (okText) toast(okText, 'ok');
      return r;
    } catch (err) {
      toast(err.message || String(err), 'error');
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return [busy, run];
}
