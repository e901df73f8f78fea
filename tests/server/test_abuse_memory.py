"""Memory stays bounded under abuse, measured as the resident memory of a real ``truckx-server`` process
(``tests/process.py``): huge and random usernames at the login, and stalled admin event feeds while
devices report large alarms."""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri

from tests.process import ADMIN_PASSWORD, ServerProcess

MB = 1024 * 1024
LOGIN = "/api/v1/admin/login"


@pytest.mark.slow
def test_huge_and_random_usernames_keep_memory_bounded(tmp_path: Path) -> None:
    # 2 a minute: the address may fail 10 times a minute
    with ServerProcess(tmp_path / "data", env={"TRUCKX_LOGIN_RATE_PER_MIN": "2"}) as srv, \
            httpx.Client(base_url=srv.url, timeout=120) as http:
        for _ in range(2):  # warm up the login path
            r = http.post(LOGIN, json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
        base = srv.rss()
        codes: dict[int | str, int] = {}
        for i in range(150):  # 150 logins with 1 MB usernames, each different
            name = secrets.token_hex(8) + "u" * 1_000_000
            try:
                status = http.post(LOGIN, json={"username": name, "password": "x"}).status_code
            except httpx.TransportError:
                status = "dropped"  # refused before the whole body was read: the connection drops
            codes[status] = codes.get(status, 0) + 1
            if i % 10 == 0:
                assert srv.rss() - base < 40 * MB, f"RSS grew by {(srv.rss() - base) / MB:.0f} MB after {i} logins"
        assert set(codes) <= {413, "dropped"} and codes.get(413, 0) >= 100, codes
        # usernames just over the limit: 400, and not counted as failures
        for _ in range(60):
            r = http.post(LOGIN, json={"username": secrets.token_hex(40), "password": "x"})
            assert r.status_code == 400 and "username" in r.json()["error"]["message"]
        # random usernames of an allowed length: 401 until the address has failed 10 times, then 429
        t0 = time.monotonic()
        answers = [http.post(LOGIN, json={"username": secrets.token_hex(32), "password": "x"}).status_code
                   for _ in range(20)]
        refilled = (time.monotonic() - t0) * 10 / 60
        assert 429 in answers, answers
        first_429 = answers.index(429)
        assert set(answers[:first_429]) == {401} and 10 <= first_429 <= 10 + refilled + 1, answers
        assert answers[-1] == 429
        grown = srv.rss() - base
        print(f"login abuse: RSS {base / MB:.0f} MB -> {srv.rss() / MB:.0f} MB")
        assert grown < 40 * MB, f"RSS grew by {grown / MB:.0f} MB"


class StalledFeed:
    """An admin event feed that completes its handshake and then does not read (a raw socket with a
    small receive buffer); :meth:`read_all` reads, later, what got through and how it ended."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/api/v1/admin/events"), max_size=None)
        request = self.proto.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.proto.send_request(request)
        self.sock.sendall(b"".join(self.proto.data_to_send()))
        self.sock.settimeout(10)
        while self.proto.handshake_exc is None and not self.proto.events_received() and \
                self.proto.state.name == "CONNECTING":
            self.proto.receive_data(self.sock.recv(4096))
        assert self.proto.handshake_exc is None and self.proto.state.name == "OPEN"

    def read_all(self, timeout: float = 30.0) -> Close | None:
        """Read until the server closes; the close frame it sent, if one got through."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if not data:
                self.proto.receive_eof()
                break
            self.proto.receive_data(data)
            self.proto.events_received()
            if self.proto.close_rcvd is not None:
                break
        self.sock.close()
        return self.proto.close_rcvd


@pytest.mark.slow
def test_stalled_feeds_and_large_alarms_keep_memory_bounded(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as srv, httpx.Client(base_url=srv.url, timeout=120) as http:
        device = srv.register(["356938035643809"])[0]
        headers = {"Authorization": f"Bearer {device['token']}"}
        blob = "x" * 900_000

        def alarm() -> None:
            body = {"type": "CRASH", "ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0, "details": {"blob": blob}}
            r = http.post("/api/v1/device/alarms", json=body, headers=headers)
            assert r.status_code == 201, r.text

        for _ in range(5):  # warm up the alarm path (1 MB bodies) before the baseline
            alarm()
        base = srv.rss()
        token = srv.admin_token()
        feeds = [StalledFeed(srv.port, token), StalledFeed(srv.port, token)]
        peak = base
        for _ in range(60):  # 54 MB of alarms; each stalled feed would hold all of it
            alarm()
            peak = max(peak, srv.rss())
        after = srv.rss()
        closes = [feed.read_all() for feed in feeds]
        print(f"stalled feeds: RSS {base / MB:.0f} MB -> peak {peak / MB:.0f} MB, after {after / MB:.0f} MB; "
              f"closes {closes}")
        assert peak - base < 40 * MB, f"RSS grew by {(peak - base) / MB:.0f} MB"
        # the server closed both as too slow (the close frame reaches a client that reads again in time)
        assert srv.log_text().count("too slow: closing it (4429)") == 2
        for close in closes:
            assert close is None or close.code == 4429, close
