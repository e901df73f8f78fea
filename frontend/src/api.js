// Same-origin calls to the truckx admin API with the session cookie. Every non-GET request carries
// the `_xsrf` cookie's value in X-XSRFToken (Tornado's XSRF protection).
import { queryString } from './util.js';

export const SESSION = '/api/v1/admin/session';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'http_error';
  }
}

let unauthorizedHandler = null;

/** Called with no argument when any call (other than the session's own) answers 401. */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

export function xsrfToken() {
  const m = /(?:^|;\s*)_xsrf=([^;]*)/.exec(document.cookie);
  return m ? m[1] : null;
}

/**
 * One API call. `query` values may be arrays (repeated parameters). Resolves to the parsed JSON body
 * (null for 204); rejects with ApiError carrying the contract's error code and message.
 */
export async function api(method, path, { query, body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') {
    const token = xsrfToken();
    if (token) headers['X-XSRFToken'] = token;
  }
  let res;
  try {
    res = await fetch(path + queryString(query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The server cannot be reached');
  }
  if (res.status === 401 && path !== SESSION && unauthorizedHandler) unauthorizedHandler();
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(res.status, err && err.code, (err && err.message) || `${res.status} ${res.statusText}`);
  }
  return data;
}

export const get = (path, query, opts) => api('GET', path, { ...opts, query });
export const post = (path, body, opts) => api('POST', path, { ...opts, body });
export const patch = (path, body, opts) => api('PATCH', path, { ...opts, body });
export const del = (path, opts) => api('DELETE', path, opts);

/**
 * Every page of a paged list: follows next_cursor until the end or until `max` items. `onPage(items,
 * total)` sees each page as it arrives. Resolves to `{items, truncated}`.
 */
export async function allPages(path, query, { limit = 1000, max = 100000, onPage, signal } = {}) {
  const items = [];
  let cursor = null;
  for (;;) {
    const page = await get(path, { ...query, limit, cursor }, { signal });
    items.push(...page.items);
    if (onPage) onPage(page.items, items.length);
    cursor = page.next_cursor;
    if (!cursor) return { items, truncated: false };
    if (items.length >= max) return { items, truncated: true };
  }
}

/** `/api/v1/admin/...` with each path segment escaped. */
export function adminPath(...segments) {
  return `/api/v1/admin/${segments.map((s) => encodeURIComponent(s)).join('/')}`;
}

export const videoUrl = (imei, name) => adminPath('devices', imei, 'videos', name);
export const thumbnailUrl = (imei, name) => `${videoUrl(imei, name)}/thumbnail`;

/** True for the answer of a call that this server does not have (yet): 404 not_found or 405. */
export function missingEndpoint(err) {
  return err instanceof ApiError && (err.status === 405 || (err.status === 404 && err.code === 'not_found'));
}
