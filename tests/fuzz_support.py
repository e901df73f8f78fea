"""What the fuzz tests share: a real ``truckx-server`` process on each store combination, seeded with
a little of everything (devices, points, alarms, videos) so that generated requests reach past 404,
and the tokens to call it with.

The server is a subprocess (``tests/process.py``): schemathesis and hypothesis drive it with blocking
clients from the test's thread, and its log is read afterwards for tracebacks.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from websockets.sync.client import connect

from tests.backends import COMBINATIONS, _MARKS, mongo_database, mysql_database
from tests.process import ServerProcess
from tests.support import new_imei
from truckx_server import openapi


def combination_params() -> list[Any]:
    """``TRUCKX_TEST_BACKENDS`` as parameters of a module-scoped fixture."""
    return [pytest.param(c, id=c, marks=[_MARKS[p] for p in c.split("+") if p in _MARKS]) for c in COMBINATIONS]


@contextlib.contextmanager
def backend_args(combination: str, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Command-line flags that put a server process on ``combination`` (fresh databases, dropped after)."""
    parts = combination.split("+")
    with contextlib.ExitStack() as stack:
        args: list[str] = []
        if "mariadb" in parts:
            args += ["--sql-url", stack.enter_context(mysql_database())]
        if "mongo" in parts:
            address = request.getfixturevalue("mongo_address")
            args += ["--locations-url", stack.enter_context(mongo_database(address))]
        yield args


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Seeded:
    """A running server process and what was put into it."""

    srv: ServerProcess
    admin_token: str
    #: registered devices the admin plane may change at will (rename, disable, rotate)
    imeis: list[str]
    #: the device whose token makes the device-plane calls (the admin plane never gets its IMEI)
    device_imei: str
    device_secret: str
    device_token: str = ""
    #: a real next_cursor of each paged list, by OpenAPI path template
    cursors: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.srv.url

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def device(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.device_token}"}

    def refresh_device(self) -> None:
        """Make the device-plane device usable again (a fuzzed call may have disabled it)."""
        r = httpx.post(self.url + "/api/v1/device/login", json={"imei": self.device_imei, "secret": self.device_secret})
        r.raise_for_status()
        self.device_token = r.json()["token"]


def seed(srv: ServerProcess, imeis: list[str]) -> Seeded:
    """Register ``imeis`` plus a device for the device plane; store points, alarms and videos; collect
    one real cursor of each paged list."""
    device_imei = new_imei()
    [dev] = srv.register([device_imei])
    admin = srv.admin_token()
    seeded = Seeded(srv, admin, list(imeis), device_imei, dev["secret"], dev["token"])
    headers = seeded.admin()
    httpx.post(srv.url + "/api/v1/admin/devices", json={"devices": [{"imei": i, "name": f"seed {i[-4:]}"}
                                                                   for i in imeis]}, headers=headers).raise_for_status()
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    # two geofences holding the points below: each device's first point inside is an enter of both
    for body in ({"name": "seed circle", "geometry": {"type": "Circle", "center": [11.5, 48.1], "radius_m": 500}},
                 {"name": "seed square", "geometry": {"type": "Polygon", "coordinates": [
                     [[11.4, 48.0], [11.6, 48.0], [11.6, 48.2], [11.4, 48.2], [11.4, 48.0]]]}}):
        httpx.post(srv.url + "/api/v1/admin/geofences", json=body, headers=headers).raise_for_status()
    with connect(f"{srv.ws_url}/api/v1/device/ws", additional_headers=seeded.device()) as ws:
        ws.send(json.dumps({"type": "locations", "seq": 1, "points": [
            {"ts": rfc3339(start + dt.timedelta(seconds=i)), "lat": 48.1, "lon": 11.5} for i in range(3)]}))
        while json.loads(ws.recv(timeout=10)).get("type") != "ack":
            pass
    for i in range(3):
        httpx.post(srv.url + "/api/v1/device/alarms", headers=seeded.device(), json={
            "type": "CRASH", "ts": rfc3339(start + dt.timedelta(minutes=i)), "lat": 48.1, "lon": 11.5,
            "files": [f"seed-{i}.mp4"]}).raise_for_status()
        body = f"video {i}".encode()
        httpx.put(srv.url + f"/api/v1/device/videos/seed-{i}.mp4", content=body,
                  headers={**seeded.device(), "X-Content-SHA256": hashlib.sha256(body).hexdigest()}).raise_for_status()
        # queued for a device that is offline: the command list has more than one page
        httpx.post(srv.url + f"/api/v1/admin/devices/{imeis[0]}/commands", json={"command": "reset"},
                   headers=headers).raise_for_status()
    for i in range(2):  # disabled: nothing is sent to them
        httpx.post(srv.url + "/api/v1/admin/webhooks", json={"url": f"https://93.184.215.14/seed-{i}",
                                                             "events": ["alarm.created"], "enabled": False},
                   headers=headers).raise_for_status()
    # the transitions are evaluated in the background, after the ack
    deadline = time.monotonic() + 30
    while len(httpx.get(srv.url + "/api/v1/admin/geofence-events", headers=headers).json()["items"]) < 2:
        assert time.monotonic() < deadline, "the seeded points were not evaluated against the geofences"
        time.sleep(0.05)
    # every paged list of the document whose only path parameter (if any) is the device
    lists = {template: template.replace("{imei}", device_imei)
             for template, item in openapi.document()["paths"].items()
             if any(p.get("name") == "cursor" for p in item.get("get", {}).get("parameters", []))
             and "{" not in template.replace("{imei}", "")}
    for template, path in lists.items():
        r = httpx.get(srv.url + path, params={"limit": 1}, headers=headers)
        r.raise_for_status()
        seeded.cursors[template] = r.json()["next_cursor"]
        assert seeded.cursors[template], f"{path} has a single page: seed more"
    return seeded


def cursor_key(cursor: str) -> list[Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def tracebacks(srv: ServerProcess) -> list[str]:
    """The server log's tracebacks (each an uncaught exception: a bug)."""
    text = srv.log_text()
    return [part[:3000] for part in text.split("Traceback (most recent call last):")[1:]]


def start_server(tmp: Path, args: list[str], *extra: str) -> ServerProcess:
    # login attempts are not what these tests are about: no rate limit in the way
    return ServerProcess(tmp, "--login-rate-per-min", "1000000", *args, *extra).start(timeout=60)
