"""The fleet console's server side: the page and its files with their headers (CSP, caching), browser
sign-in with the session cookie (flags, revocation on every process, the user check), XSRF on every
change made with the cookie, and the events WebSocket's origin check for cookie handshakes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.websocket

from tests.server.support import VIEWER_PASSWORD, make_user
from tests.support import ADMIN_PASSWORD, RunningServer, ServerFactory
from truckx_server.config import ConfigError, load, tile_source
from truckx_server.handlers.console import STATIC_DIR
from truckx_server.storage.sql.schema import sessions as sessions_table

CSP_PARTS = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
             "media-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]


def csp_of(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in policy.split(";")) if d}


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str | bool]:
    """The attributes of the Set-Cookie header for ``name`` (lower-case keys; flags as True)."""
    for header in response.headers.get_list("set-cookie"):
        first, *attrs = [p.strip() for p in header.split(";")]
        if first.split("=", 1)[0] == name:
            out: dict[str, str | bool] = {"value": first.split("=", 1)[1]}
            for attr in attrs:
                key, _, value = attr.partition("=")
                out[key.lower()] = value or True
            return out
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


async def sign_in(server: RunningServer, client: httpx.AsyncClient | None = None, username: str = "admin",
                  password: str = ADMIN_PASSWORD) -> httpx.AsyncClient:
    """A browser-like client (its own cookie jar) that loaded the page and signed in."""
    client = client or httpx.AsyncClient(base_url=server.base_url, timeout=15)
    assert (await client.get("/")).status_code == 200
    r = await client.post("/api/v1/admin/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return client


def xsrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-XSRFToken": client.cookies["_xsrf"]}


# -- the page and its files -------------------------------------------------------------------------


async def test_page_has_the_tile_url_csp_and_xsrf_cookie(server_factory: ServerFactory) -> None:
    tile_url = "https://{s}.tiles.example.com/base/{z}/{x}/{y}.png?key=a&style=b"
    server = await server_factory(tile_url=tile_url)
    r = await server.http.get("/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<meta name="truckx-tile-url" content="https://{s}.tiles.example.com/base/{z}/{x}/{y}.png?key=a&amp;' \
           'style=b">' in r.text
    assert "{{TILE_URL}}" not in r.text
    csp = csp_of(r)
    for part in CSP_PARTS:
        name, _, value = part.partition(" ")
        assert csp[name] == value, (name, csp)
    assert csp["img-src"] == "'self' https://*.tiles.example.com"
    assert "unsafe" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers["cache-control"] == "no-store"
    cookie = cookie_attributes(r, "_xsrf")
    assert cookie["path"] == "/" and cookie["samesite"] == "Strict" and "httponly" not in cookie
    # every asset link is versioned by content (and exists)
    links = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
    assert {"app.js", "app.css"} <= {re.sub(r"\?.*", "", link).rsplit("/", 1)[-1] for link in links}
    for link in links:
        assert re.search(r"\?v=[0-9a-f]{16,}$", link), link
        asset = await server.http.get(link)
        assert asset.status_code == 200 and asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "content-security-policy" in asset.headers and asset.headers["x-content-type-options"] == "nosniff"


async def test_default_tile_server_is_openstreetmap(server: RunningServer) -> None:
    r = await server.http.get("/")
    assert 'content="https://tile.openstreetmap.org/{z}/{x}/{y}.png"' in r.text
    assert csp_of(r)["img-src"] == "'self' https://tile.openstreetmap.org"


def test_tile_urls_that_could_break_the_page_or_policy_are_refused() -> None:
    assert tile_source("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://tile.openstreetmap.org"
    assert tile_source("http://127.0.0.1:8080/t/{z}/{x}/{y}.png") == "http://127.0.0.1:8080"
    assert tile_source("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    assert tile_source("/tiles/{z}/{x}/{y}.png") is None  # this server: 'self'
    for bad in ("https://a.example/{z}/{x}/{y}.png; script-src *", "https://a.example/{z}/{x}/{y}.png' x",
                "javascript:alert(1)//{z}{x}{y}", "//evil.example/{z}/{x}/{y}.png",
                "https://a{s}.example/{z}/{x}/{y}", "https://a.example/{z}/{x}.png", "ftp://a.example/{z}/{x}/{y}.png",
                "https://a.example/{z}/{x}/{y}\"><"):
        with pytest.raises(ConfigError):
            load(environ={}, tile_url=bad)


async def test_static_files_are_revalidated_and_paths_stay_inside(server: RunningServer) -> None:
    r = await server.http.get("/static/app.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "no-cache" and r.content == (STATIC_DIR / "app.css").read_bytes()
    again = await server.http.get("/static/app.css", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert (await server.http.get("/static/LICENSES/THIRD-PARTY-NOTICES.txt")).status_code == 200
    for path in ("/static/../config.py", "/static/%2e%2e/config.py", "/static/..%2fconfig.py", "/static/images",
                 "/static/nothing.js", "/static//etc/passwd"):
        r = await server.http.get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert r.json()["error"]["code"] in ("forbidden", "not_found"), path
    r = await server.http.post("/static/app.js", content=b"x")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# -- sign-in, the cookie, sign-out ------------------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_cookie_that_authenticates_the_admin_plane(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as browser:
        r = await browser.post("/api/v1/admin/session", json={"username": "admin", "password": "wrong password"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert "truckx_session" not in r.headers.get("set-cookie", "")
        assert (await browser.get("/api/v1/admin/session")).status_code == 401

        r = await browser.post("/api/v1/admin/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        body = r.json()
        assert body["username"] == "admin" and body["role"] == "admin" and body["expires_at"].endswith("Z")
        cookie = cookie_attributes(r, "truckx_session")
        assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert "secure" not in cookie  # plain HTTP
        assert len(str(cookie["value"])) >= 43 and "expires" in cookie
        assert "token" not in body

        assert (await browser.get("/api/v1/admin/session")).json() == body
        r = await browser.get("/api/v1/admin/devices")
        assert r.status_code == 200 and r.json()["items"] == []
        # the cookie is for people: the device plane does not take it
        r = await browser.put("/api/v1/device/videos/x.mp4", content=b"abc", headers=xsrf(browser))
        assert r.status_code == 401

    # the database holds no usable cookie: only its SHA-256
    rows = await server.probe.sql.db.all(sa.select(sessions_table))
    assert [r["username"] for r in rows] == ["admin"]
    assert rows[0]["id"] == hashlib.sha256(str(cookie["value"]).encode()).hexdigest()
    assert rows[0]["principal"]["sub"] == "admin" and rows[0]["principal"]["role"] == "admin"


async def test_cookie_is_secure_when_the_request_came_over_tls(server: RunningServer) -> None:
    """Behind a TLS-terminating proxy whose X-Forwarded-Proto the server trusts, ``request.protocol``
    is https; here an HTTPServer with ``xheaders`` in front of the same application plays that part."""
    proxy = tornado.httpserver.HTTPServer(server.server.app, xheaders=True)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    proxy.add_sockets(sockets)
    try:
        port = sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            r = await client.post("/api/v1/admin/session", json={"username": "admin", "password": ADMIN_PASSWORD},
                                  headers={"X-Forwarded-Proto": "https"})
            assert r.status_code == 200
            assert cookie_attributes(r, "truckx_session")["secure"] is True
    finally:
        proxy.stop()
        await proxy.close_all_connections()


async def test_sign_in_is_rate_limited_like_login(server_factory: ServerFactory) -> None:
    server = await server_factory(login_rate_per_min=3)
    statuses = []
    for _ in range(3):
        r = await server.http.post("/api/v1/admin/session", json={"username": "admin", "password": "wrong one!"})
        statuses.append(r.status_code)
    r = await server.http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert statuses == [401, 401, 401] and r.status_code == 429  # one budget for both doors
    assert r.json()["error"]["code"] == "rate_limited"


async def test_sign_out_revokes_the_session_on_the_server(server: RunningServer) -> None:
    browser = await sign_in(server)
    try:
        stolen = browser.cookies["truckx_session"]
        # sign-out is a change: without the XSRF header it is refused and the session lives on
        r = await browser.delete("/api/v1/admin/session")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert (await browser.get("/api/v1/admin/session")).status_code == 200
        r = await browser.delete("/api/v1/admin/session", headers=xsrf(browser))
        assert r.status_code == 204
        assert cookie_attributes(r, "truckx_session")["value"] in ('""', "")
        # the old cookie, replayed, is refused everywhere
        async with httpx.AsyncClient(base_url=server.base_url, timeout=15,
                                     cookies={"truckx_session": stolen}) as replay:
            for path in ("/api/v1/admin/session", "/api/v1/admin/devices", "/api/v1/admin/alarms"):
                r = await replay.get(path)
                assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
        assert await server.probe.sql.sessions.get(hashlib.sha256(stolen.encode()).hexdigest()) is None
    finally:
        await browser.aclose()


async def test_a_session_ended_on_one_process_is_refused_by_another(server_factory: ServerFactory) -> None:
    """Two processes on the same stores (the in-process bus reaches only its own process, so the other
    one drops its cached copy within CACHE_TTL_S; a cluster bus makes it immediate)."""
    a = await server_factory()
    b = await server_factory()
    browser = await sign_in(a)
    try:
        cookie = browser.cookies["truckx_session"]
        async with httpx.AsyncClient(base_url=b.base_url, timeout=15, cookies={"truckx_session": cookie}) as other:
            assert (await other.get("/api/v1/admin/devices")).status_code == 200  # b reads and caches it
            assert (await browser.delete("/api/v1/admin/session", headers=xsrf(browser))).status_code == 204
            loop = asyncio.get_running_loop()
            started = loop.time()
            while (await other.get("/api/v1/admin/devices")).status_code == 200:
                assert loop.time() - started < 10, "the other process still accepts the revoked session"
                await asyncio.sleep(0.1)
            assert (await other.get("/api/v1/admin/session")).status_code == 401
    finally:
        await browser.aclose()


async def test_a_new_sign_in_ends_the_session_the_browser_had(server: RunningServer) -> None:
    browser = await sign_in(server)
    try:
        first = browser.cookies["truckx_session"]
        await sign_in(server, browser)
        assert browser.cookies["truckx_session"] != first
        async with httpx.AsyncClient(base_url=server.base_url, cookies={"truckx_session": first}) as replay:
            assert (await replay.get("/api/v1/admin/session")).status_code == 401
        assert (await browser.get("/api/v1/admin/session")).status_code == 200
    finally:
        await browser.aclose()


async def test_a_session_follows_its_user(server: RunningServer) -> None:
    """The session is checked by the same user check as a token: deleting the user ends it."""
    await make_user(server, "ops-viewer", "viewer")
    viewer = await sign_in(server, username="ops-viewer", password=VIEWER_PASSWORD)
    try:
        r = await viewer.get("/api/v1/admin/session")
        assert r.json()["role"] == "viewer"
        assert (await viewer.get("/api/v1/admin/alarms")).status_code == 200
        # a viewer's cookie may read, not change, with or without the XSRF header
        r = await viewer.post("/api/v1/admin/devices", json={"imei": "490154203237518"}, headers=xsrf(viewer))
        assert r.status_code == 403 and "needs role admin" in r.json()["error"]["message"]
        r = await server.http.delete("/api/v1/admin/users/ops-viewer", headers=await server.admin_headers())
        assert r.status_code == 204
        r = await viewer.get("/api/v1/admin/alarms")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    finally:
        await viewer.aclose()


async def test_an_expired_session_is_refused(server_factory: ServerFactory) -> None:
    server = await server_factory(admin_token_ttl_s=1)
    browser = await sign_in(server)
    cookie = browser.cookies["truckx_session"]
    await browser.aclose()
    # a client that keeps sending the cookie past its expiry (a browser would drop it)
    async with httpx.AsyncClient(base_url=server.base_url, cookies={"truckx_session": cookie}) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (await client.get("/api/v1/admin/session")).status_code == 200:
            assert loop.time() - started < 10
            await asyncio.sleep(0.2)
        r = await client.get("/api/v1/admin/devices")
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


# -- XSRF ---------------------------------------------------------------------------------------------


async def test_every_change_made_with_the_cookie_needs_the_xsrf_token(server: RunningServer) -> None:
    dev = await server.register(login=False)
    browser = await sign_in(server)
    try:
        changes = [("POST", "/api/v1/admin/users", {"username": "x-user", "password": "long enough password"}),
                   ("PATCH", f"/api/v1/admin/devices/{dev.imei}", {"name": "renamed"}),
                   ("POST", f"/api/v1/admin/devices/{dev.imei}/commands", {"command": "reset"}),
                   ("POST", f"/api/v1/admin/devices/{dev.imei}/secret", None),
                   ("DELETE", "/api/v1/admin/users/nobody", None)]
        wrong_token = "2|00000000|" + "0" * 32 + "|1700000000"
        for method, path, body in changes:
            for headers in ({}, {"X-XSRFToken": wrong_token}, {"X-XSRFToken": "garbage"}):
                r = await browser.request(method, path, json=body, headers=headers)
                assert r.status_code == 403, (method, path, headers, r.status_code)
                assert r.json()["error"]["code"] == "forbidden" and "X-XSRFToken" in r.json()["error"]["message"]
        assert (await server.http.get(f"/api/v1/admin/devices/{dev.imei}",
                                      headers=await server.admin_headers())).json()["name"] is None
        # with the token they go through
        r = await browser.patch(f"/api/v1/admin/devices/{dev.imei}", json={"name": "renamed"}, headers=xsrf(browser))
        assert r.status_code == 200 and r.json()["name"] == "renamed"
        # a bearer request is not XSRF-checked, even from a client holding the cookie
        r = await browser.patch(f"/api/v1/admin/devices/{dev.imei}", json={"name": "by token"},
                                headers=await server.admin_headers())
        assert r.status_code == 200 and r.json()["name"] == "by token"
        # reads need no token
        assert (await browser.get(f"/api/v1/admin/devices/{dev.imei}")).status_code == 200
    finally:
        await browser.aclose()


async def test_sign_in_needs_no_xsrf_token_and_sets_one(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as client:  # never loaded the page
        r = await client.post("/api/v1/admin/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200 and client.cookies.get("_xsrf")
        r = await client.post("/api/v1/admin/users", json={"username": "via-cookie", "password": "long enough pw"},
                              headers=xsrf(client))
        assert r.status_code == 201


# -- the events feed ------------------------------------------------------------------------------------


async def next_event(ws: tornado.websocket.WebSocketClientConnection, predicate: Any,
                     timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.read_message()
            assert frame is not None, "the feed closed"
            event = json.loads(frame)
            if predicate(event):
                return event


async def events_with_cookie(server: RunningServer, cookie: str, **headers: str
                             ) -> tornado.websocket.WebSocketClientConnection:
    request = tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{server.port}/api/v1/admin/events",
                                             headers={"Cookie": f"truckx_session={cookie}", **headers})
    return await tornado.websocket.websocket_connect(request)


async def test_events_feed_takes_the_cookie_from_this_origin_only(server: RunningServer) -> None:
    browser = await sign_in(server)
    cookie = browser.cookies["truckx_session"]
    await browser.aclose()
    own = f"http://127.0.0.1:{server.port}"
    # the console's own page: Sec-Fetch-Site same-origin, or (older browsers) Origin equal to Host
    for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, {"Origin": own}):
        ws = await events_with_cookie(server, cookie, **headers)
        dev = await server.register()
        await server.connect(dev)
        event = await next_event(ws, lambda e: e["type"] == "device_status" and e["imei"] == dev.imei)
        assert event["online"] is True
        ws.close()
    # another site's page: refused, whatever the cookie
    for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://evil.example"},
                    {"Origin": f"http://localhost:{server.port}", "Sec-Fetch-Site": "same-site"}):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await events_with_cookie(server, cookie, **headers)
        assert refused.value.code == 403, headers
    # a bearer token may come from anywhere (it is not sent by browsers on their own)
    token = await server.admin_token()
    ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{server.port}/api/v1/admin/events",
        headers={"Authorization": f"Bearer {token}", "Origin": "http://elsewhere.example"}))
    ws.close()
    # signing out closes the feeds opened with the session (4401), and the cookie opens none any more
    browser = await sign_in(server)
    cookie = browser.cookies["truckx_session"]
    ws = await events_with_cookie(server, cookie, Origin=own)
    assert (await browser.delete("/api/v1/admin/session", headers=xsrf(browser))).status_code == 204
    await browser.aclose()
    assert await asyncio.wait_for(ws.read_message(), 10) is None
    ws.close()
    assert ws.close_code == 4401
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await events_with_cookie(server, cookie, Origin=own)
    assert refused.value.code == 401
    # a made-up cookie: 401
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await events_with_cookie(server, "A" * 43, Origin=own)
    assert refused.value.code == 401
