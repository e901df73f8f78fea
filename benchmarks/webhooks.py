"""Webhooks: how fast a server process drains its outbox to receivers, and what recording the events costs
the change that makes them.

A real ``truckx-server`` (SQLite, embedded default) with ``--webhook-deny-private false``, a threaded
receiver on 127.0.0.1 answering 204, one device posting N alarms back to back (each an ``alarm.created``
event written in the alarm's transaction). Printed: alarms/s posted with no endpoint and with E
endpoints, and deliveries/s from the first alarm until the receiver has every one of them (per endpoint
one delivery at a time, in order; endpoints in parallel). Also checks the order per endpoint.

    python benchmarks/webhooks.py --alarms 2000 --endpoints 1 4
"""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """Counts deliveries per path (one path per endpoint) and keeps their webhook-ids in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_path: dict[str, list[bytes]] = {}
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with sink.lock:
                    sink.by_path.setdefault(self.path, []).append(body)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.by_path.values())


def run(alarms: int, endpoints: int, code: Path = ROOT) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "TRUCKX_INITIAL_ADMIN_PASSWORD": PASSWORD, "PYTHONPATH": str(code)}
        flags = ["--webhook-deny-private", "false"] if endpoints else []  # none: runs on code without webhooks
        proc = subprocess.Popen([sys.executable, "-m", "truckx_server", "--host", "127.0.0.1", "--port", str(port),
                                 "--data-dir", tmp, *flags, "--log-level", "warning"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sink = Sink()
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=30) as http:
                for _ in range(300):
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                token = http.post("/api/v1/admin/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
                admin = {"Authorization": f"Bearer {token}"}
                for i in range(endpoints):
                    r = http.post("/api/v1/admin/webhooks", headers=admin,
                                  json={"url": f"http://127.0.0.1:{sink.server.server_address[1]}/e{i}",
                                        "events": ["alarm.created"]})
                    r.raise_for_status()
                imei = "356938035643809"
                secret = http.post("/api/v1/admin/devices", json={"imei": imei}, headers=admin).json()["secret"]
                dtoken = http.post("/api/v1/device/login", json={"imei": imei, "secret": secret}).json()["token"]
                dh = {"Authorization": f"Bearer {dtoken}"}
                t0 = time.monotonic()
                sent = []
                for i in range(alarms):
                    alarm_id = str(uuid.uuid4())
                    r = http.post("/api/v1/device/alarms", headers=dh,
                                  json={"id": alarm_id, "type": "CRASH", "ts": "2026-11-29T10:00:00Z", "lat": 1.0,
                                        "lon": 2.0})
                    assert r.status_code == 201, r.text
                    sent.append(alarm_id)
                posted_s = time.monotonic() - t0
                want = alarms * endpoints
                deadline = time.monotonic() + 600
                while sink.count() < want and time.monotonic() < deadline:
                    time.sleep(0.01)
                drained_s = time.monotonic() - t0
                import json
                in_order = all([json.loads(b)["data"]["id"] for b in bodies] == sent
                               for bodies in sink.by_path.values()) and len(sink.by_path) == endpoints
                return {"alarms": alarms, "endpoints": endpoints, "alarms_per_s": alarms / posted_s,
                        "delivered": sink.count(), "deliveries_per_s": sink.count() / drained_s,
                        "drained_s": drained_s, "in_order": in_order}
        finally:
            proc.terminate()
            proc.wait(20)
            sink.server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alarms", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--code", type=Path, default=ROOT, help="the source tree to run the server from (with "
                        "--endpoints 0: a tree without webhooks, for a baseline)")
    args = parser.parse_args()
    for endpoints in args.endpoints:
        r = run(args.alarms, endpoints, args.code)
        print(f"endpoints={r['endpoints']:2d}  alarms posted {r['alarms_per_s']:7.0f}/s  "
              f"deliveries {r['delivered']:6d} in {r['drained_s']:6.1f} s = {r['deliveries_per_s']:6.0f}/s  "
              f"in order per endpoint: {r['in_order']}")


if __name__ == "__main__":
    main()
