"""No token in any log line: the access log (also with percent-encoded parameter names, any parameter
carrying a JWT, a JWT in the path), uncaught exceptions of plain and WebSocket handlers opened with
``?token=``, and Tornado's own loggers. The server's log set-up (``logs.setup``) writes to a buffer;
real tokens are used and their text must appear nowhere."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Iterator

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support import RunningServer
from truckx_server import logs


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """Everything the process logs, through the handler the server's ``main`` installs."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.setup("info", stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("tornado.access").disabled = False


async def ws(server: RunningServer, path: str) -> tornado.websocket.WebSocketClientConnection:
    return await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{server.port}{path}"))


async def test_tokens_appear_in_no_log_line(server: RunningServer, server_log: io.StringIO) -> None:
    admin = await server.admin_token()
    device = await server.register()
    auth = {"Authorization": f"Bearer {admin}"}
    # the access log: percent-encoded names, any parameter holding a JWT, a JWT in the path
    for query in (f"?%74oken={admin}", f"?%74%6F%6B%65%6E={admin}&x=1", f"?access%5Ftoken={admin}",
                  f"?jwt={admin}", f"?harmless={admin}", f"?token=%{admin[0].encode().hex()}{admin[1:]}",
                  f"?imei=1&Token={admin}"):
        r = await server.http.get("/api/v1/admin/users" + query, headers=auth)
        assert r.status_code == 200
    assert (await server.http.get(f"/api/v1/{admin}")).status_code == 404
    # a WebSocket handshake with the token in an encoded query parameter (accepted: it is ?token=)
    conn = await ws(server, f"/api/v1/admin/events?%74oken={admin}")
    conn.close()
    # an uncaught exception in a plain handler, in a WebSocket handler's open(), in another's prepare
    with server.probe.failing("users", "list"):
        r = await server.http.get(f"/api/v1/admin/users?token={admin}", headers=auth)
        assert r.status_code == 500 and admin not in r.text
    with server.probe.failing("devices", "session_opened"):
        conn = await ws(server, f"/api/v1/device/ws?token={device.token}")
        assert await conn.read_message() is None  # aborted
        conn.close()
    with server.probe.failing("events", "open_feed"):
        conn = await ws(server, f"/api/v1/admin/events?token={admin}")
        assert await conn.read_message() is None
        conn.close()
    # Tornado's own logger quotes a malformed request line
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /api/v1/admin/users {admin}\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await server.http.get("/healthz")  # one request more, so that the lines above are written

    text = server_log.getvalue()
    for secret in (admin, device.token):
        assert secret not in text
        assert secret.rsplit(".", 1)[1] not in text  # not even the signature alone
    # and each path above did log (so that this test can fail)
    assert text.count("GET /api/v1/admin/users?") >= 7
    assert "uncaught exception in GET /api/v1/admin/users?token=[redacted]" in text
    assert "uncaught exception in GET /api/v1/device/ws?token=[redacted]" in text
    assert "uncaught exception in GET /api/v1/admin/events?token=[redacted]" in text
    assert "RuntimeError: injected failure" in text
    assert "Malformed HTTP" in text
    assert "404 GET /api/v1/[redacted]" in text


def test_scrub_reads_the_query_as_the_server_does() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    assert logs.scrub(f"/a?%74oken={jwt}&limit=5") == "/a?token=[redacted]&limit=5"
    assert logs.scrub(f"/a?x={jwt}") == "/a?x=[redacted]"
    assert logs.scrub("/a?password=hunter2&imei=1,2") == "/a?password=[redacted]&imei=1,2"
    assert logs.scrub("/a%0a200 GET /forged") == "/a%0A200%20GET%20/forged"  # no forged log lines
    assert len(logs.scrub("/" + "a" * 100_000)) < 1100
    assert logs.scrub_text(f"x %65yJ{jwt[3:]} y") == "x [redacted] y"
