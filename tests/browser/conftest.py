"""Fixtures of the browser tests: a real ``truckx-server`` process fed by a real ``truckx-sim`` process,
one alarm with a real H.264 clip, and the machine's Chromium driven by Playwright.

- Chromium is ``/usr/bin/chromium`` (Debian package ``chromium``; Playwright cannot download browsers
  here), launched as ``frontend/dev/smoke.py`` does, with every host name but localhost resolving to
  nothing. Missing Chromium or Playwright skips these tests, or fails them in CI
  (``TRUCKX_TEST_REQUIRE_SERVICES=1``, as for the databases).
- Every request of a page goes through :class:`Watch`'s route: this server's origin passes, the tile
  server's is answered with a plain grid tile (the map's background), and anything else is refused and
  recorded (a test fails on it). Console errors and page errors are recorded too.
- Screenshots (1280x800) go to ``docs/screenshots/``, which the README links, with
  ``TRUCKX_UPDATE_SCREENSHOTS=1`` (``make screenshots``); else to a scratch directory
  (``TRUCKX_SCREENSHOTS_DIR`` to put them elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.sync.client import connect

from tests.backends import unavailable
from tests.clips import h264_mp4
from tests.process import ServerProcess
from truckx_server.models import make_imei

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TRUCKX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
#: where the screenshots go: docs/screenshots/ when asked to refresh them (``make screenshots``), else a
#: scratch directory, so that an ordinary test run leaves the checkout clean
SHOTS = Path(os.environ.get("TRUCKX_SCREENSHOTS_DIR")
             or (ROOT / "docs" / "screenshots" if os.environ.get("TRUCKX_UPDATE_SCREENSHOTS")
                 else Path(tempfile.gettempdir()) / "truckx-screenshots"))
TILE_URL = "http://tiles.truckx.test/{z}/{x}/{y}.png"
TILE_ORIGIN = "http://tiles.truckx.test"
#: simulated devices feeding the server
DEVICES = 4
VIEWPORT = {"width": 1280, "height": 800}
#: "Failed to load resource" console lines of answers the console expects and handles (frontend/README.md):
#: the session probe's 401 before sign-in, a wrong password's 401, and the 404 of wave-2 calls this
#: server does not have yet
EXPECTED_FAILURES = re.compile(r"/api/v1/admin/(session$|(commands|geofences|geofence-events|webhooks)(\?|$)|"
                               r"devices/\d+/trips)")


def origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def grid_png(size: int = 256) -> bytes:
    """A light 256x256 PNG with a faint grid: the stand-in for map tiles."""
    bg, line = b"\xee\xf2\xf5", b"\xd5\xdd\xe5"
    rows = [b"\x00" + (line * size if y % 64 == 0 else b"".join(line if x % 64 == 0 else bg for x in range(size)))
            for y in range(size)]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


@dataclass
class Evidence:
    """A device of the test's own with an alarm whose video is a real clip."""

    imei: str
    token: str
    alarm_id: str
    video: str


@dataclass
class Fleet:
    server: ServerProcess
    sim_imeis: list[str]
    evidence: Evidence
    admin_token: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the browser tests need Playwright (pip install -e '.[test]')")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        unavailable(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def fleet(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("console")
    data = base / "data"
    # webhooks go to a receiver on 127.0.0.1 (test_geofences_and_webhooks): private addresses allowed
    server = ServerProcess(data, "--tile-url", TILE_URL, "--batch-interval-ms", "10",
                           "--webhook-deny-private", "false").start()
    sim_log = open(base / "sim.log", "wb")
    sim = subprocess.Popen(
        [sys.executable, "-m", "truckx_sim.main", "--url", server.url, "--provision",
         "--admin-password-file", str(data / "admin-password"), "--devices", str(DEVICES), "--duration", "1800",
         "--report-interval", "1", "--alarm-rate", "0", "--video-size", "0", "--no-dashboard",
         "--secrets-file", str(base / "sim-devices.json"), "--seed", "7"],
        stdout=sim_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        admin_token = server.admin_token()
        admin = {"Authorization": f"Bearer {admin_token}"}

        def reporting() -> list[str] | None:
            latest = httpx.get(server.url + "/api/v1/admin/locations/latest", headers=admin, timeout=10).json()
            imeis = sorted({p["imei"] for p in latest["items"]})
            return imeis if len(imeis) >= DEVICES else None

        sim_imeis = wait_until(reporting, 90, f"{DEVICES} simulated devices reporting", 0.3)
        yield Fleet(server, sim_imeis, make_evidence(server, admin), admin_token)
    except BaseException:
        print("--- server log ---\n" + server.log_text(), file=sys.stderr)
        print("--- sim log ---\n" + (base / "sim.log").read_text(errors="replace")[-5000:], file=sys.stderr)
        raise
    finally:
        sim.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
        if sim.poll() is None:
            sim.kill()
        sim_log.close()
        server.stop()


def rfc3339(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def send_points(url: str, token: str, seq: int, points: list[dict[str, Any]]) -> None:
    """Locations from a device over its WebSocket; returns once the server acked them (stored)."""
    with connect(url.replace("http://", "ws://") + "/api/v1/device/ws",
                 additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "locations", "seq": seq, "points": points}))
        deadline = time.monotonic() + 15
        while True:
            msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("type") == "ack" and msg["seq"] >= seq:
                return


#: where the evidence device drove: 30 minutes through Berlin, ending 5 minutes ago
ROUTE = [(52.5000 + i * 0.0012, 13.3500 + i * 0.0020) for i in range(26)]


def make_evidence(server: ServerProcess, admin: dict[str, str]) -> Evidence:
    """A device of ours with a track of the last half hour and, in its middle, a CRASH alarm whose
    video is a real 4 s H.264 clip, read by the server."""
    imei = make_imei(f"86{time.time_ns() % 10**12:012d}")
    [dev] = server.register([imei])
    r = httpx.patch(f"{server.url}/api/v1/admin/devices/{imei}", json={"name": "truck-evidence"}, headers=admin)
    assert r.status_code == 200, r.text
    now = time.time()
    send_points(server.url, dev["token"], 1, [
        {"ts": rfc3339(now - 35 * 60 + i * 72), "lat": lat, "lon": lon, "speed_kmh": 40.0 + i % 7}
        for i, (lat, lon) in enumerate(ROUTE)])
    device = {"Authorization": f"Bearer {dev['token']}"}
    name = "evidence-front.mp4"
    lat, lon = ROUTE[12]
    r = httpx.post(server.url + "/api/v1/device/alarms", headers=device, timeout=10, json={
        "type": "CRASH", "ts": rfc3339(now - 35 * 60 + 12 * 72), "lat": lat, "lon": lon,
        "speed_kmh": 48.0, "files": [name], "details": {"g_force": 2.4}})
    assert r.status_code == 201, r.text
    alarm_id = r.json()["id"]
    r = httpx.put(f"{server.url}/api/v1/device/videos/{name}", content=h264_mp4(4.0, 640, 360), headers=device,
                  timeout=30)
    assert r.status_code == 201, r.text

    def thumbnail_made() -> bool:
        alarm = httpx.get(f"{server.url}/api/v1/admin/alarms/{alarm_id}", headers=admin, timeout=10).json()
        return alarm["files"][0]["thumbnail"]

    wait_until(thumbnail_made, 30, "the evidence clip's thumbnail")
    return Evidence(imei, dev["token"], alarm_id, name)


@dataclass
class Watch:
    """What a page did that it should not: console errors, page errors, requests to other origins."""

    base: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)
    documents: list[Any] = field(default_factory=list)

    def attach(self, context: Any) -> None:
        tile = grid_png()

        def route(r: Any) -> None:
            url = r.request.url
            if origin(url) == self.base:
                r.continue_()
            elif origin(url) == TILE_ORIGIN:
                r.fulfill(status=200, content_type="image/png", body=tile)
            else:
                self.foreign.append(url)
                r.abort()

        context.route("**/*", route)
        context.on("page", self.watch_page)

    def watch_page(self, page: Any) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", self.on_request)
        page.on("response", self.on_response)

    def on_request(self, request: Any) -> None:
        if request.url.startswith(("data:", "blob:")):
            self.foreign.append(f"{request.url[:60]} (a data:/blob: URL)")

    def on_response(self, response: Any) -> None:
        path = urlsplit(response.url).path
        if response.request.resource_type == "document":
            self.documents.append(response)
        if (response.status == 401 and EXPECTED_FAILURES.search(path) and path.endswith("/session")) or (
                response.status == 404 and EXPECTED_FAILURES.search(path) and not path.endswith("/session")):
            self.expected.add(response.url)

    def on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and url in self.expected:
            return
        self.errors.append(f"console error: {msg.text} ({url})")

    def allow_failure(self, url: str) -> None:
        """A request the test makes fail on purpose (its console line is expected)."""
        self.expected.add(url)

    def assert_clean(self) -> None:
        problems = self.errors + [f"request to another origin: {u}" for u in self.foreign]
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def watched(browser: Any, fleet: Fleet) -> Iterator[tuple[Any, Watch]]:
    """A fresh browser context (its own cookies) with a page, watched."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    watch = Watch(fleet.url)
    watch.attach(context)
    page = context.new_page()
    try:
        yield page, watch
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let the map finish its redraw
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def api_json(fleet: Fleet, method: str, path: str, **kwargs: Any) -> Any:
    r = httpx.request(method, fleet.url + path, headers=fleet.admin, timeout=15, **kwargs)
    r.raise_for_status()
    return r.json() if r.content else None


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1)[:2000]
