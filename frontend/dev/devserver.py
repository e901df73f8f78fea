"""Development server for the fleet console, in front of a REAL truckx server.

Until truckx-server has browser sessions of its own, this serves ``truckx_server/static`` and plays
the server-side part of the console's contract itself:

- ``GET /``: ``index.html`` with ``{{TILE_URL}}`` filled in, the ``_xsrf`` cookie and a strict
  Content-Security-Policy (the one the real server is to send);
- ``POST/GET/DELETE /api/v1/admin/session``: sign-in logs in to the real server
  (``POST /api/v1/admin/login``) and keeps the token here, in memory, under a random session id held
  in the ``truckx_session`` cookie (``HttpOnly``, ``SameSite=Strict``); the token never reaches the
  browser;
- every other ``/api/...`` request, and the events WebSocket, is proxied to the real server with
  ``Authorization: Bearer <token>``, streaming in both directions (video Range requests included);
- XSRF: every request other than GET/HEAD/OPTIONS (sign-in excluded) must carry the ``_xsrf``
  cookie's value in ``X-XSRFToken``, else ``403`` with the contract's JSON error body.

    .venv/bin/python frontend/dev/devserver.py --upstream http://127.0.0.1:8888 --port 8890

For development only: sessions live in this process's memory, there is no TLS, and it listens on
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import html
import json
import logging
import re
import secrets
import struct
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import tornado.httpclient
import tornado.iostream
import tornado.web
import tornado.websocket

log = logging.getLogger("truckx.devserver")

STATIC = Path(__file__).resolve().parents[2] / "truckx_server" / "static"
DEFAULT_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
SESSION_COOKIE = "truckx_session"
MAX_SESSIONS = 1000
#: request headers passed on to the real server (the rest, cookies above all, stay here)
FORWARD_REQUEST = ("accept", "content-type", "range", "if-range", "if-none-match", "if-modified-since",
                   "upload-offset", "upload-complete", "x-content-sha256")
#: response headers not copied back (hop-by-hop, or set by Tornado itself)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate",
              "proxy-authorization", "server", "date"}


def tile_origin(template: str) -> str | None:
    """The scheme and host of a tile URL template for the CSP (``{s}`` becomes ``*``)."""
    m = re.match(r"^(https?://[^/]+)", template, re.I)
    return m.group(1).replace("{s}", "*") if m else None


def content_security_policy(tile_url: str) -> str:
    img = "'self'"
    origin = tile_origin(tile_url)
    if origin:
        img += f" {origin}"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; media-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class Sessions:
    """Session id -> the real server's token, bounded (the oldest goes first)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def create(self, entry: dict[str, Any]) -> str:
        sid = secrets.token_urlsafe(32)
        while len(self._items) >= self.limit:
            self._items.popitem(last=False)
        self._items[sid] = entry
        return sid

    def get(self, sid: str | None) -> dict[str, Any] | None:
        if not sid:
            return None
        entry = self._items.get(sid)
        if entry is None:
            return None
        if entry["expires"] <= time.time():
            self._items.pop(sid, None)
            return None
        return entry

    def drop(self, sid: str | None) -> None:
        if sid:
            self._items.pop(sid, None)


def parse_expiry(value: Any) -> float:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time() + 3600


class Base(tornado.web.RequestHandler):
    @property
    def sessions(self) -> Sessions:
        return self.settings["sessions"]

    @property
    def upstream(self) -> str:
        return self.settings["upstream"]

    def session(self) -> dict[str, Any] | None:
        return self.sessions.get(self.get_cookie(SESSION_COOKIE))

    def send_error_json(self, status: int, code: str, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        code = {400: "invalid_argument", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 502: "unavailable"}.get(status_code, "error")
        if status_code == 403 and message and ("XSRF" in message or "_xsrf" in message):
            message = "missing or wrong X-XSRFToken header (send the _xsrf cookie's value)"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))


class IndexHandler(Base):
    def get(self) -> None:
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        tile_url = self.settings["tile_url"]
        page = page.replace("{{TILE_URL}}", html.escape(tile_url, quote=True))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", content_security_policy(tile_url))
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.finish(page)


class StaticHandler(tornado.web.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")


class SessionHandler(Base):
    def check_xsrf_cookie(self) -> None:
        if self.request.method == "POST":
            return  # sign-in is excluded (there is no session yet to forge a request with)
        super().check_xsrf_cookie()

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return self.send_error_json(400, "invalid_json", "the body is not JSON")
        if not isinstance(body, dict):
            return self.send_error_json(400, "invalid_json", "the body must be a JSON object")
        client: httpx.AsyncClient = self.settings["http"]
        try:
            r = await client.post(self.upstream + "/api/v1/admin/login",
                                  json={"username": body.get("username"), "password": body.get("password")})
        except httpx.HTTPError as exc:
            return self.send_error_json(502, "unavailable", f"the truckx server cannot be reached: {exc}")
        if r.status_code != 200:
            self.set_status(r.status_code)
            self.set_header("Content-Type", "application/json")
            return self.finish(r.content)
        data = r.json()
        username = str(body.get("username"))
        role = data.get("role") or "viewer"
        sid = self.sessions.create({"token": data["token"], "username": username, "role": role,
                                    "expires_at": data.get("expires_at"),
                                    "expires": parse_expiry(data.get("expires_at"))})
        self.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/",
                        secure=self.request.protocol == "https")
        self.finish({"username": username, "role": role, "expires_at": data.get("expires_at")})

    def get(self) -> None:
        s = self.session()
        if s is None:
            return self.send_error_json(401, "unauthorized", "not signed in")
        self.finish({"username": s["username"], "role": s["role"], "expires_at": s["expires_at"]})

    def delete(self) -> None:
        if self.session() is None:
            return self.send_error_json(401, "unauthorized", "not signed in")
        self.sessions.drop(self.get_cookie(SESSION_COOKIE))
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.set_status(204)
        self.finish()


class ProxyHandler(Base):
    """Every other /api/ request, to the real server with the session's bearer token, streamed."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    async def _proxy(self) -> None:
        s = self.session()
        if s is None:
            return self.send_error_json(401, "unauthorized", "not signed in")
        headers = {k: v for k, v in self.request.headers.items() if k.lower() in FORWARD_REQUEST}
        headers["Authorization"] = f"Bearer {s['token']}"
        client: httpx.AsyncClient = self.settings["http"]
        req = client.build_request(self.request.method, self.upstream + self.request.uri, headers=headers,
                                   content=self.request.body if self.request.body else None)
        try:
            upstream = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            return self.send_error_json(502, "unavailable", f"the truckx server cannot be reached: {exc}")
        try:
            if upstream.status_code == 401:
                # the token was revoked or has expired: the session is over
                self.sessions.drop(self.get_cookie(SESSION_COOKIE))
            self.set_status(upstream.status_code, upstream.reason_phrase or None)
            self.clear_header("Content-Type")
            for k, v in upstream.headers.multi_items():
                if k.lower() not in HOP_BY_HOP:
                    self.add_header(k, v)
            if self.request.method != "HEAD" and upstream.status_code not in (204, 304):
                async for chunk in upstream.aiter_raw():
                    self.write(chunk)
                    await self.flush()  # backpressure: wait for the browser before reading more
            self.finish()
        except tornado.iostream.StreamClosedError:
            pass  # the browser went away (a video seek closes its previous range request)
        finally:
            await upstream.aclose()

    get = head = post = put = patch = delete = options = _proxy  # type: ignore[assignment]

    def compute_etag(self) -> None:
        return None  # the real server's ETag passes through untouched


class EventsProxy(tornado.websocket.WebSocketHandler):
    """The admin events feed: the browser's socket (cookie) <-> the real server's (bearer token)."""

    def initialize(self) -> None:
        self.upstream_ws: tornado.websocket.WebSocketClientConnection | None = None
        self.pump: asyncio.Task[None] | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        s = self.settings["sessions"].get(self.get_cookie(SESSION_COOKIE))
        if s is None:
            self.set_status(401)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": {"code": "unauthorized", "message": "not signed in"}}))
            return
        url = self.settings["upstream"].replace("http", "ws", 1) + self.request.uri
        try:
            self.upstream_ws = await tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {s['token']}"}))
        except (tornado.httpclient.HTTPClientError, OSError) as exc:
            code = getattr(exc, "code", 502)
            self.set_status(code if code in (401, 403) else 502)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": {"code": "unavailable", "message": f"events feed: {exc}"}}))
            return
        await super().get(*args, **kwargs)

    def open(self, *args: Any) -> None:
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        up = self.upstream_ws
        assert up is not None
        while True:
            msg = await up.read_message()
            if msg is None:
                code = up.close_code or 1011
                if not (code == 1000 or 3000 <= code <= 4999 or code in (1001, 1008, 1011)):
                    code = 1011
                self.close(code, up.close_reason)
                return
            try:
                await self.write_message(msg)  # backpressure: the browser's pace
            except tornado.websocket.WebSocketClosedError:
                return

    def on_message(self, message: str | bytes) -> None:
        if self.upstream_ws is not None:
            self.upstream_ws.write_message(message)

    def on_close(self) -> None:
        if self.upstream_ws is not None:
            self.upstream_ws.close()
        if self.pump is not None:
            self.pump.cancel()


class DevTilesHandler(tornado.web.RequestHandler):
    """Plain grid tiles for offline work and tests (``--tile-url http://localhost:PORT/dev-tiles/...``)."""

    _png: bytes | None = None

    def get(self, *_: str) -> None:
        if DevTilesHandler._png is None:
            DevTilesHandler._png = grid_png()
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(DevTilesHandler._png)


def grid_png(size: int = 256) -> bytes:
    """A light 256x256 PNG with a faint grid (no imaging library needed)."""
    bg, line = b"\xee\xf2\xf5", b"\xd5\xdd\xe5"
    rows = []
    for y in range(size):
        if y % 64 == 0:
            rows.append(b"\x00" + line * size)
        else:
            rows.append(b"\x00" + b"".join(line if x % 64 == 0 else bg for x in range(size)))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def make_app(upstream: str, tile_url: str, http: httpx.AsyncClient, debug: bool = False) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/", IndexHandler),
            (r"/static/(.*)", StaticHandler, {"path": str(STATIC)}),
            (r"/dev-tiles/(\d+)/(\d+)/(\d+)\.png", DevTilesHandler),
            (r"/api/v1/admin/session", SessionHandler),
            (r"/api/v1/admin/events", EventsProxy),
            (r"/api/.*", ProxyHandler),
        ],
        upstream=upstream.rstrip("/"),
        tile_url=tile_url,
        sessions=Sessions(),
        http=http,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "path": "/"},
        debug=debug,
    )


async def serve(args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5), limits=limits) as http:
        app = make_app(args.upstream, args.tile_url, http)
        server = app.listen(args.port, args.host, xheaders=False)
        log.warning("console on http://%s:%d/ -> %s (tiles: %s)", args.host, args.port, args.upstream, args.tile_url)
        try:
            await asyncio.Event().wait()
        finally:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", default="http://127.0.0.1:8888", help="the real truckx server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8890)
    p.add_argument("--tile-url", default=DEFAULT_TILE_URL,
                   help="tile URL template ({z}/{x}/{y}, optional {s}); 'dev' for plain grid tiles served "
                        "by this process from http://localhost:PORT/dev-tiles/ (offline work)")
    args = p.parse_args()
    if urlsplit(args.upstream).scheme not in ("http", "https"):
        p.error("--upstream must be an http:// or https:// URL")
    if args.tile_url == "dev":
        args.tile_url = f"http://localhost:{args.port}/dev-tiles/{{z}}/{{x}}/{{y}}.png"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
