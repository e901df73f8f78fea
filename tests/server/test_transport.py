"""The transport under a real server: refusals that keep pooled connections usable, request bodies
timed out on inactivity rather than total duration, SQLite synchronous enough for what an ack
promises, and a data directory that nobody else can read."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.process import ServerProcess
from tests.server.support import report_alarm
from tests.support import Device, RunningServer, ServerFactory, new_imei

VIDEO_URL = "/api/v1/device/videos/{}"


# -- 13. a refusal in prepare() must not break the next request on a pooled connection --------------

@pytest.mark.slow
def test_refusals_before_the_body_keep_a_pooled_client_working(tmp_path: Path) -> None:
    """Against a server in its own process (in the test's own event loop, the server would always close
    before the client reuses the connection, and the race would never show)."""
    with ServerProcess(tmp_path / "data") as srv:
        [dev] = srv.register([new_imei()])
        admin = {"Authorization": f"Bearer {srv.admin_token()}"}
        r = httpx.post(srv.url + "/api/v1/admin/users", headers=admin,
                       json={"username": "pooled-viewer", "password": "viewer-password-123", "role": "viewer"})
        assert r.status_code == 201, r.text
        r = httpx.post(srv.url + "/api/v1/admin/login",
                       json={"username": "pooled-viewer", "password": "viewer-password-123"})
        viewer = {"Authorization": f"Bearer {r.json()['token']}"}
        device = {"Authorization": f"Bearer {dev['token']}"}
        small_json = {"imei": "490154203237518", "name": "x" * 200}
        over_json_limit = b"[" + b"0," * (1024 * 1024 // 2) + b"0]"  # the default JSON limit is 1 MiB
        cases = [
            ("POST", "/api/v1/admin/devices", {}, {"json": small_json}, 401),  # no token
            ("POST", "/api/v1/admin/devices", viewer, {"json": small_json}, 403),  # wrong role
            ("GET", "/api/v1/admin/devices", {"Authorization": "Bearer nonsense"}, {}, 401),
            ("GET", "/no/such/path", {}, {}, 404),
            ("POST", "/no/such/path", {}, {"content": b"y" * 30_000}, 404),
            ("POST", "/api/v1/device/alarms", {**device, "Content-Type": "application/json"},
             {"content": over_json_limit}, 413),
            ("PUT", VIDEO_URL.format("a.mp4"), {}, {"content": b"v" * 50_000}, 401),
            ("HEAD", VIDEO_URL.format("a.mp4"), {}, {}, 401),
        ]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=srv.url, limits=limits, timeout=10) as pooled:
            for round_ in range(10):
                for method, path, headers, kwargs, status in cases:
                    r = pooled.request(method, path, headers=headers, **kwargs)
                    assert r.status_code == status, (round_, method, path, r.text)
                    if method != "HEAD":
                        assert r.json()["error"]["code"]
                    # the next request on the same pool works
                    ok = pooled.get("/healthz")
                    assert ok.status_code == 200, (round_, method, path)


async def test_a_refused_body_too_large_to_read_is_answered_with_connection_close(server: RunningServer) -> None:
    """Past what the server reads and drops, the refusal goes out at once with ``Connection: close``,
    so the client does not reuse a connection that still carries the unread body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /api/v1/admin/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 900000000\r\n\r\n{")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 401") and b"\r\nConnection: close\r\n" in head, head


async def test_a_handshake_with_a_huge_body_is_refused_before_any_of_it_is_buffered(server: RunningServer) -> None:
    """WebSocket handlers do not stream their body: Tornado would buffer it in memory, up to the
    server-wide limit (once as large as the largest video, 2 GiB) before the handler even looks at it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /api/v1/device/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Content-Length: 1000000000\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # without sending a byte of the body
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


# -- 10. request bodies time out on inactivity, not on total duration ------------------------------

IDLE_S = 2.0


async def raw_put(server: RunningServer, dev: Device, name: str, total: int) -> tuple[asyncio.StreamReader,
                                                                                       asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write((f"PUT {VIDEO_URL.format(name)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dev.token}\r\n"
                  f"Content-Length: {total}\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


async def test_a_slow_but_steady_upload_completes(server_factory: ServerFactory) -> None:
    server = await server_factory(body_idle_timeout_s=IDLE_S)
    dev = await server.register()
    piece, every = 1024, 0.1  # 10 KiB/s, for three times the inactivity timeout
    pieces = int(3 * IDLE_S / every)
    data = os.urandom(piece * pieces)
    reader, writer = await raw_put(server, dev, "slow.mp4", len(data))
    started = time.monotonic()
    for i in range(pieces):
        writer.write(data[i * piece:(i + 1) * piece])
        await writer.drain()
        await asyncio.sleep(every)
    status_line = await asyncio.wait_for(reader.readline(), 10)
    elapsed = time.monotonic() - started
    writer.close()
    assert elapsed > 2 * IDLE_S
    assert status_line.startswith(b"HTTP/1.1 201"), status_line
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/videos/slow.mp4",
                              headers=await server.admin_headers())
    assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()


async def test_a_stalled_upload_is_cut_after_the_inactivity_timeout_and_its_part_kept(
        server_factory: ServerFactory) -> None:
    server = await server_factory(body_idle_timeout_s=IDLE_S)
    dev = await server.register()
    sent = os.urandom(300_000)
    reader, writer = await raw_put(server, dev, "stalled.mp4", 1_000_000)
    writer.write(sent)
    await writer.drain()
    stalled_at = time.monotonic()
    # the client sends nothing more; the server closes the connection by itself
    rest = await asyncio.wait_for(reader.read(), 10 * IDLE_S)
    waited = time.monotonic() - stalled_at
    writer.close()
    assert rest == b"" and waited >= IDLE_S * 0.9, (rest[:100], waited)
    deadline = time.monotonic() + 10
    while server.probe.upload_busy(dev.imei, "stalled.mp4"):
        assert time.monotonic() < deadline, "the cut upload was not put away"
        await asyncio.sleep(0.02)
    h = await server.http.head(VIDEO_URL.format("stalled.mp4"), headers={"Authorization": f"Bearer {dev.token}"})
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(len(sent))


async def test_a_request_head_must_arrive_within_the_header_timeout(server_factory: ServerFactory) -> None:
    server = await server_factory(header_timeout_s=IDLE_S)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10 * IDLE_S) == b""
    assert time.monotonic() - started >= IDLE_S * 0.9
    writer.close()


# -- 11. what an ack promises: SQLite writes survive an OS crash -----------------------------------

async def test_sqlite_stores_sync_fully(server: RunningServer) -> None:
    pragmas = await server.probe.sqlite_pragma("synchronous")
    journal = await server.probe.sqlite_pragma("journal_mode")
    if not pragmas:
        pytest.skip("no store in SQLite with this backend")
    assert set(journal.values()) == {"wal"}
    assert pragmas == {k: 2 for k in pragmas}, pragmas  # 2 = FULL: every commit is fsynced


# -- 12. private data --------------------------------------------------------------------------------

def modes_under(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def not_private(modes: dict[str, int], root: Path) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes.items()
            if mode != (0o700 if (root / name).is_dir() else 0o600)}


@pytest.fixture
def open_umask():
    """A permissive umask, as many services run with: the server must not depend on it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_every_file_and_directory_in_a_fresh_data_dir_is_private(
        server_factory: ServerFactory, tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "fresh" / "data"
    server = await server_factory(data_dir=data, initial_admin_password=None)  # writes admin-password
    r = await server.http.post("/api/v1/admin/login",
                               json={"username": "admin", "password": server.probe.initial_admin_password})
    server._admin_token = r.json()["token"]
    dev = await server.register()
    ws = await server.connect(dev)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    await ws.send({"type": "location", "seq": 1, "ts": now, "lat": 1.0, "lon": 2.0})
    await ws.wait_ack(1)
    await report_alarm(server, dev)
    auth = {"Authorization": f"Bearer {dev.token}"}
    r = await server.http.put(VIDEO_URL.format("whole.mp4"), content=os.urandom(100_000), headers=auth)
    assert r.status_code == 201
    r = await server.http.patch(VIDEO_URL.format("part.mp4"), content=os.urandom(50_000),
                                headers={**auth, "Upload-Offset": "0"})
    assert r.status_code == 204  # a part waiting to be resumed
    modes = modes_under(data)
    names = set(modes)
    assert {"jwt-secret", "device-hash-key", "admin-password", "videos"} <= names
    assert any(n.endswith("whole.mp4") for n in names) and any(n.endswith("part.mp4.part") for n in names)
    if server.settings.resolved_sql_url.startswith("sqlite"):
        assert {"truckx.db", "truckx.db-wal", "locations.db", "locations.db-wal"} <= names, sorted(names)
    assert not not_private(modes, data), not_private(modes, data)


async def test_an_existing_data_dir_is_tightened_at_start_and_logged_once(
        server_factory: ServerFactory, tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support import stop_server

    data = tmp_path / "old" / "data"
    server = await server_factory(data_dir=data)
    dev = await server.register()
    r = await server.http.put(VIDEO_URL.format("old.mp4"), content=b"old" * 1000,
                              headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 201
    await stop_server(server)
    # as an older version left it: world-readable
    for p in [data, *data.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert not_private(modes_under(data), data)
    caplog.set_level(logging.INFO, logger="truckx")
    await server_factory(data_dir=data)
    assert not not_private(modes_under(data), data), not_private(modes_under(data), data)
    notes = [r for r in caplog.records if "permissions" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in notes]
