// The fleet as the console knows it: every device with its status and last position, kept current
// from the events feed. Changes are collected and announced at most every NOTIFY_MS, with the set of
// IMEIs that changed, so 100 location events a second cost one map update and one list render.
import { adminPath, allPages, get } from './api.js';

const NOTIFY_MS = 300;
//: unknown IMEIs fetched at once; more wait (a flood of events from new devices stays bounded)
const MAX_PENDING_LOOKUPS = 20;
const MAX_DEVICES = 100000;
const RETRY_MS = 30000;

export class Fleet {
  constructor(feed) {
    this.devices = new Map();
    this.loaded = false;
    this.error = null;
    this.listeners = new Set();
    this.changed = new Set();
    this.all = false;
    this.timer = null;
    this.lookups = new Set();
    this.waiting = new Set();
    this.membership = 0; // bumped when devices are added, removed or renamed (not on every move)
    this.lastAlarm = new Map(); // imei -> the newest alarm seen on the feed since the page loaded
    this.failed = new Map(); // imei -> time of a failed look-up (not retried for RETRY_MS)
    if (feed) {
      feed.subscribe((ev) => this.onEvent(ev));
      feed.onReconnect(() => this.load());
    }
  }

  /** fn(changedImeis | null) after changes; null means "anything may have changed". */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  touch(imei) {
    if (imei == null) this.all = true;
    else this.changed.add(imei);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), NOTIFY_MS);
  }

  flush() {
    this.timer = null;
    const changed = this.all ? null : this.changed;
    this.changed = new Set();
    this.all = false;
    for (const fn of this.listeners) fn(changed);
  }

  async load() {
    try {
      const { items } = await allPages('/api/v1/admin/devices', {}, { max: MAX_DEVICES });
      const seen = new Set();
      for (const d of items) {
        seen.add(d.imei);
        this.devices.set(d.imei, { ...this.devices.get(d.imei), ...d });
      }
      for (const imei of [...this.devices.keys()]) if (!seen.has(imei)) this.devices.delete(imei);
      const latest = await get('/api/v1/admin/locations/latest');
      for (const p of latest.items || []) {
        const d = this.devices.get(p.imei);
        if (d && (!d.last_location || d.last_location.ts < p.ts)) d.last_location = p;
      }
      this.error = null;
      this.membership += 1;
    } catch (err) {
      this.error = err;
    }
    this.loaded = true;
    this.touch(null);
  }

  get(imei) {
    return this.devices.get(imei);
  }

  list() {
    return [...this.devices.values()];
  }

  /** Name for display: the device's name, else its IMEI. */
  label(imei) {
    const d = this.devices.get(imei);
    return (d && d.name) || imei;
  }

  /** Replace one device's fields (after a PATCH, a registration...). */
  put(device) {
    this.membership += 1;
    this.devices.set(device.imei, { ...this.devices.get(device.imei), ...device });
    this.touch(device.imei);
  }

  onEvent(ev) {
    const imei = ev.imei;
    if (!imei) return;
    const d = this.devices.get(imei);
    if (!d) {
      // before the first load the list will bring it; after it, it was registered since: fetch it
      if (this.loaded && (ev.type === 'location' || ev.type === 'device_status' || ev.type === 'alarm')) this.lookup(imei);
      return;
    }
    if (ev.type === 'location' && ev.location) {
      const p = ev.location;
      if (!d.last_location || d.last_location.ts <= p.ts) d.last_location = p;
      d.last_seen = ev.at || p.ts;
      d.online = true;
      this.touch(imei);
    } else if (ev.type === 'device_status') {
      d.online = !!ev.online;
      d.last_seen = ev.at || d.last_seen;
      this.touch(imei);
    } else if (ev.type === 'alarm' && ev.alarm) {
      const prev = this.lastAlarm.get(imei);
      if (ev.alarm.status === 'active' && (!prev || prev.ts <= ev.alarm.ts)) this.lastAlarm.set(imei, ev.alarm);
      else if (prev && prev.id === ev.alarm.id) this.lastAlarm.set(imei, ev.alarm);
      this.touch(imei);
    }
  }

  /** A device seen in an event but not in the list: registered after the page loaded. Fetch it. */
  lookup(imei) {
    if (this.lookups.has(imei) || this.devices.has(imei) || this.devices.size >= MAX_DEVICES) return;
    if (Date.now() - (this.failed.get(imei) || 0) < RETRY_MS) return;
    if (this.lookups.size >= MAX_PENDING_LOOKUPS) {
      if (this.waiting.size < MAX_PENDING_LOOKUPS * 50) this.waiting.add(imei);
      return;
    }
    this.lookups.add(imei);
    get(adminPath('devices', imei))
      .then((d) => this.put(d))
      .catch(() => {
        if (this.failed.size > 1000) this.failed.clear();
        this.failed.set(imei, Date.now());
      })
      .finally(() => {
        this.lookups.delete(imei);
        const next = this.waiting.values().next();
        if (!next.done) {
          this.waiting.delete(next.value);
          this.lookup(next.value);
        }
      });
  }
}
