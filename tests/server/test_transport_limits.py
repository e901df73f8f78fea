"""Transport limits of a real ``truckx-server`` process (tests/process.py), measured from outside:
a device that sends and never reads, more idle sockets than file descriptors, a port already taken.

Settings are passed as ``TRUCKX_*`` environment variables, so that each test also runs (and fails for
the right reason) against a server that does not know them.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import select
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.process import ServerProcess
from tests.rawclient import RawWebSocket
from tests.support import new_imei

pytestmark = pytest.mark.slow

WS_PATH = "/api/v1/device/ws"


def points(n: int) -> list[dict[str, object]]:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return [{"ts": (now - dt.timedelta(seconds=n - i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "lat": 10.0 + i / 1000,
             "lon": 20.0} for i in range(n)]


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


# -- 1. a device that does not read ----------------------------------------------------------------

#: what a connection may have queued for writing in this test (the server's default is larger)
WRITE_CAP = 128 * 1024
#: the invalid input the test may send: the server with a cap closes the connection after about 6 MiB
#: (once the kernel's buffers, some 4 MiB of replies, are full); the server without one grew by about
#: 100 MiB for 8 MiB of this input and never closed it
SEND_BUDGET = 16 * 1024 * 1024
#: the RSS growth allowed while the client floods
RSS_BOUND = 40 * 1024 * 1024


def test_a_device_that_does_not_read_is_closed_and_server_memory_stays_bounded(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", env={"TRUCKX_WS_WRITE_BUFFER_BYTES": str(WRITE_CAP)}).start()
    try:
        [dev] = srv.register([new_imei()])
        good = points(3)
        # (the receive buffer keeps its default size: a tiny one makes the kernel drop the server's
        # segments, and the acknowledgements they carry, which stalls the client's own sending)
        ws = RawWebSocket(srv.port, WS_PATH, dev["token"], timeout=30)
        ws.send_json({"type": "locations", "seq": 1, "points": good})  # acked, but the ack is never read
        # every frame is refused with an error frame naming the bad points: replies the client never reads
        bad = RawWebSocket.frame(json.dumps({"type": "locations", "seq": 2, "points": [1] * 100}).encode())
        burst = bad * 32
        rss_before = peak = srv.rss()
        sent, closed = 0, False
        while sent < SEND_BUDGET and not closed:
            try:
                ws.send_raw(burst)
            except (ConnectionResetError, BrokenPipeError):  # aborted by the server
                closed = True
                break
            sent += len(burst)
            peak = max(peak, srv.rss())
            closed = "not reading" in srv.log_text()
        peak = max(peak, srv.rss())
        growth = peak - rss_before
        assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB after {sent / 2**20:.1f} MiB of input"
        assert closed, f"the server did not close a client that never reads ({sent / 2**20:.1f} MiB sent)"
        # reading now, the client finds the replies queued for it and then the close frame with its code
        frames, code = ws.read_until_close()
        ws.close()
        assert code == 4429, (code, len(frames), srv.log_text()[-2000:])
        assert frames[0] == {"type": "ack", "seq": 1} or any(f.get("type") == "ack" for f in frames)
        assert sum(f.get("type") == "error" for f in frames) * len(bad) < sent  # replies stopped first

        # the device reconnects and resends what it has no ack for (as if it had not read it): acked,
        # stored once
        again = RawWebSocket(srv.port, WS_PATH, dev["token"])
        again.send_json({"type": "locations", "seq": 1, "points": good})
        frame = again.read_frame()
        assert frame is not None and json.loads(frame[1]) == {"type": "ack", "seq": 1}
        again.close()
        headers = {"Authorization": f"Bearer {srv.admin_token()}"}
        r = httpx.get(f"{srv.url}/api/v1/admin/devices/{dev['imei']}/locations", headers=headers)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert srv.log_text().count("not reading") == 1
    finally:
        srv.stop()


# -- 4. out of file descriptors ---------------------------------------------------------------------

FD_LIMIT = 160
IDLE_SOCKETS = FD_LIMIT + 120
HEADER_TIMEOUT_S = 3


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF after whatever answer it sent, or a reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("max_connections", ["", "100000"], ids=["cap-from-fd-limit", "cap-above-fd-limit"])
def test_more_idle_sockets_than_file_descriptors(tmp_path: Path, max_connections: str) -> None:
    """The cap derived from RLIMIT_NOFILE answers the excess and closes it; with a cap set above the fd
    limit, accept() fails with EMFILE and the server backs off instead of spinning. Either way: little
    CPU, a short log, /healthz answers, and every idle socket is closed by the server."""
    env = {"TRUCKX_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "TRUCKX_MAX_CONNECTIONS": max_connections}
    srv = ServerProcess(tmp_path / "data", env=env, preexec=low_fd_limit).start()
    idle: list[socket.socket] = []
    try:
        log_before = len(srv.log_text().splitlines())
        for _ in range(IDLE_SOCKETS):
            idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        cpu = srv.cpu_percent(2.0)
        assert cpu < 30, f"the server used {cpu:.0f}% CPU with {IDLE_SOCKETS} idle sockets"
        # every idle socket is closed by the server: the excess at once or once descriptors are free
        # again, the others after the header timeout
        open_ = list(idle)
        deadline = time.monotonic() + 12 * HEADER_TIMEOUT_S + 30
        while open_ and time.monotonic() < deadline:
            open_ = [s for s in open_ if not closed_by_server(s)]
            time.sleep(0.1)
        assert not open_, f"{len(open_)} of {IDLE_SOCKETS} idle sockets still open"
        r = wait_until(lambda: _healthz(srv.url), 20, "/healthz")
        assert r.status_code == 200
        lines = srv.log_text().splitlines()[log_before:]
        assert len(lines) < 30, "log flooded:\n" + "\n".join(lines[:40])
        assert "Traceback" not in "\n".join(lines)
    finally:
        for s in idle:
            s.close()
        srv.stop()


def _healthz(url: str) -> httpx.Response | None:
    try:
        r = httpx.get(url + "/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return r if r.status_code == 200 else None


# -- 17. a port already taken -----------------------------------------------------------------------

@pytest.mark.parametrize("workers", [[], ["--workers", "2", "--bus-url", "redis://127.0.0.1:6379/15",
                                          "--locations-url", "mongodb://127.0.0.1:1/unused"]],
                         ids=["one process", "workers"])
def test_a_taken_port_prints_one_line_and_exits_with_2(tmp_path: Path, workers: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        srv = ServerProcess(tmp_path / "data", *workers, port=busy.getsockname()[1])
        code = srv.exit_code(timeout=60)
    lines = [line for line in srv.log_text().strip().splitlines() if " INFO " not in line]
    assert code == 2, srv.log_text()
    assert len(lines) == 1 and "in use" in lines[0] and str(srv.port) in lines[0], lines
