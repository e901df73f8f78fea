// The live events feed: one WebSocket to /api/v1/admin/events (same origin; the session cookie
// authenticates it), reconnected with exponential backoff. After a reconnect every `reconnected`
// listener runs so the pages re-read their lists and nothing missed while away stays missing.

const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
const PING_MS = 25000;
const STABLE_MS = 10000;

export class Feed {
  constructor({ url, onAuthLost } = {}) {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url = url || `${proto}//${location.host}/api/v1/admin/events`;
    this.onAuthLost = onAuthLost;
    this.listeners = new Set();
    this.reconnectListeners = new Set();
    this.stateListeners = new Set();
    this.state = 'connecting';
    this.delay = MIN_DELAY_MS;
    this.ws = null;
    this.timer = null;
    this.pinger = null;
    this.openedOnce = false;
    this.stopped = false;
    this.openedAt = 0;
    this.received = 0;
  }

  /** fn(event) for every event; returns the unsubscribe function. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onReconnect(fn) {
    this.reconnectListeners.add(fn);
    return () => this.reconnectListeners.delete(fn);
  }

  onState(fn) {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const fn of this.stateListeners) fn(state);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, 'signed out');
      this.ws = null;
    }
    this.setState('stopped');
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      this.setState('live');
      this.pinger = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
      }, PING_MS);
      if (this.openedOnce) for (const fn of this.reconnectListeners) fn();
      this.openedOnce = true;
    };
    ws.onmessage = (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (!event || typeof event.type !== 'string' || event.type === 'pong') return;
      this.received += 1;
      for (const fn of this.listeners) {
        try {
          fn(event);
        } catch (err) {
          // one broken listener must not stop the others
          setTimeout(() => {
            throw err;
          });
        }
      }
    };
    ws.onerror = () => {}; // onclose follows and handles it
    ws.onclose = (ev) => {
      clearInterval(this.pinger);
      this.ws = null;
      if (this.stopped) return;
      // 4401/4403 (or a refused handshake, seen as 1006 before open): the session may be gone.
      if (this.onAuthLost && (ev.code === 4401 || ev.code === 4403 || ev.code === 1008 || !this.openedAt)) {
        this.onAuthLost();
      }
      if (this.openedAt && Date.now() - this.openedAt > STABLE_MS) this.delay = MIN_DELAY_MS;
      this.openedAt = 0;
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.setState('reconnecting');
    const wait = this.delay * (0.75 + Math.random() * 0.5);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }
}
