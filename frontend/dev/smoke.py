"""Smoke test of the fleet console in a real browser (Playwright driving the machine's Chromium).

Signs in through the dev server (frontend/dev/devserver.py) in front of a real truckx server that
``truckx-sim`` is feeding, visits every page, exercises the main actions, takes a 1280x800 screenshot
of each page, and fails on:
- any console error or uncaught page error, except the "Failed to load resource" lines of the
  answers the console expects and handles (401 of the session probe before sign-in; 404 of wave-2
  calls that an older server does not have yet);
- any request to another origin than the page's and the tile server's.

    .venv/bin/python frontend/dev/smoke.py --url http://127.0.0.1:8890 \\
        --username admin --password-file truckx-data/admin-password --shots /tmp/console-shots

or let it start the dev server itself in front of a truckx server:

    .venv/bin/python frontend/dev/smoke.py --upstream http://127.0.0.1:8888 --password-file ...

Chromium runs with a host-resolver rule that resolves every name but localhost to nothing, so no
request can leave the machine whatever the tile URL says.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect, sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
#: calls the console makes whose 404 it handles (wave-2 endpoints an older server lacks)
OPTIONAL = re.compile(r"/api/v1/admin/(commands|geofences|geofence-events|webhooks|devices/\d+/trips|"
                      r"devices/\d+/videos/[^/]+/thumbnail)(\?|$)")


def origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class Watch:
    """Console errors, page errors and foreign requests seen during the run."""

    def __init__(self, page: Page, base: str) -> None:
        self.base = origin(base)
        self.tile_origin: str | None = None
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.expected_failures: set[str] = set()
        page.on("console", self.on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", self.on_request)
        page.on("response", self.on_response)

    def on_request(self, req: Request) -> None:
        o = origin(req.url)
        if req.url.startswith(("data:", "blob:")):
            self.foreign.append(f"{req.url[:60]} (data:/blob: URL)")
        elif o != self.base and o != self.tile_origin:
            self.foreign.append(req.url)

    def on_response(self, res: Response) -> None:
        path = res.url[len(self.base):] if res.url.startswith(self.base) else res.url
        if (res.status == 401 and path.startswith("/api/v1/admin/session")) or (
                res.status == 404 and OPTIONAL.search(path)):
            self.expected_failures.add(res.url)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and url in self.expected_failures:
            return
        self.errors.append(f"console error: {msg.text} ({url})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def devserver(upstream: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "devserver.py"), "--upstream", upstream, "--port", str(port),
                             "--tile-url", "dev"])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


#: a same-origin API call from the page, with the XSRF header, as the console makes it; returns the status
JS_CALL = """async ([method, path, body]) => {
    const m = /(?:^|;\\s*)_xsrf=([^;]*)/.exec(document.cookie);
    const r = await fetch(path, {method, headers: {'Content-Type': 'application/json', 'X-XSRFToken': m ? m[1] : ''},
                                 body: body === null ? undefined : JSON.stringify(body)});
    return r.status;
}"""


def sign_in(page: Page, username: str, password: str) -> None:
    expect(page.locator("form.signin")).to_be_visible()
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator(".topbar")).to_be_visible()


def sign_out(page: Page) -> None:
    page.click("button:has-text('Sign out')")
    expect(page.locator("form.signin")).to_be_visible()


def shot(page: Page, shots: Path | None, name: str) -> None:
    if shots is not None:
        page.wait_for_timeout(400)  # let the map finish its redraw
        page.screenshot(path=str(shots / f"{name}.png"))


def run(url: str, username: str, password: str, shots: Path | None, headed: bool = False) -> list[str]:
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=not headed)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        watch = Watch(page, url)
        page.goto(url + "/")
        watch.tile_origin = origin(page.get_attribute('meta[name="truckx-tile-url"]', "content") or url)

        # -- sign in ------------------------------------------------------------------------------
        expect(page.locator("form.signin")).to_be_visible()
        shot(page, shots, "01-signin")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "wrong password!")
        page.click("button[type=submit]")
        expect(page.locator(".error-box")).to_be_visible()
        watch.expected_failures.add(url + "/api/v1/admin/session")  # the 401 of the wrong password
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        expect(page.locator(".topbar")).to_be_visible()
        expect(page.locator(".live-live")).to_be_visible(timeout=10000)

        # a cookie-authenticated change without the XSRF header is refused
        watch.expected_failures.add(url + "/api/v1/admin/users")
        status = page.evaluate("""async () => (await fetch('/api/v1/admin/users', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{}'})).status""")
        assert status == 403, f"a POST without X-XSRFToken answered {status}, not 403"
        print("xsrf: a POST without the token is refused (403)")

        # -- fleet map ------------------------------------------------------------------------------
        page.wait_for_function("() => window.truckxConsole && window.truckxConsole.markers().length > 0",
                               timeout=15000)
        n = page.evaluate("() => window.truckxConsole.markers().length")
        rows = page.locator(".device-row").count()
        print(f"fleet map: {n} markers, {rows} devices listed")
        before = {m["imei"]: (m["lat"], m["lon"]) for m in page.evaluate("() => window.truckxConsole.markers()")}
        moved = page.wait_for_function(
            """(before) => window.truckxConsole.markers().find(
                   (m) => before[m.imei] && (m.lat !== before[m.imei][0] || m.lon !== before[m.imei][1]))""",
            arg=before, timeout=20000).json_value()
        first = moved  # a device that is online and reporting: the command goes to it
        print("fleet map: a marker moved with the events feed")
        shot(page, shots, "02-fleet")
        page.locator(".device-row").first.click()
        expect(page.locator(".details h2")).to_be_visible()
        expect(page.locator(".mini-list, .details .empty").first).to_be_visible(timeout=10000)
        shot(page, shots, "03-fleet-device")

        # -- track ------------------------------------------------------------------------------------
        page.click(".details >> text=Track")
        expect(page.locator(".track-summary")).to_be_visible(timeout=20000)
        expect(page.locator(".playback")).to_be_visible()
        page.click(".playback .play")
        page.wait_for_timeout(1500)
        page.click(".playback .play")
        shot(page, shots, "04-track")

        # -- alarms -------------------------------------------------------------------------------------
        page.click(".nav >> text=Alarms")
        expect(page.locator("table.table tbody tr").first).to_be_visible(timeout=20000)
        with_video = page.locator("tbody tr:has(.files-badge.ok)")
        target = with_video.first if with_video.count() else page.locator("tbody tr").first
        target.click()
        expect(page.locator(".detail-panel")).to_be_visible()
        shot(page, shots, "05-alarms")
        thumbs = page.locator(".detail-panel button.thumb")
        if thumbs.count():
            has_thumbnail = page.locator(".detail-panel button.thumb img").count() > 0
            thumbs.first.click()
            video = page.locator(".detail-panel video")
            expect(video).to_be_visible()
            if has_thumbnail:  # a real video (not the simulator's random bytes): it must play
                page.wait_for_function("() => document.querySelector('.detail-panel video').currentTime > 0.5",
                                       timeout=15000)
                print("alarms: the video plays")
        ack = page.locator(".detail-panel .lifecycle button:has-text('Acknowledge')")
        if ack.count():
            ack.click()
            page.fill(".detail-panel .lifecycle input.note", "checked by the smoke test")
            page.click(".detail-panel .lifecycle button:has-text('Confirm acknowledge')")
            expect(page.locator(".detail-panel .badge:has-text('Acknowledged')")).to_be_visible(timeout=10000)
            print("alarms: acknowledged one")
        shot(page, shots, "06-alarm-detail")

        # -- commands ------------------------------------------------------------------------------------
        page.click(".nav >> text=Commands")
        expect(page.locator(".send-form")).to_be_visible()
        imei = first["imei"]
        page.fill(".send-form input[list]", imei)
        page.select_option(".send-form select", "set_report_interval")
        page.fill(".send-form input[type=number]", "2")
        page.click(".send-form button[type=submit]")
        row = page.locator(f"tbody tr:has-text('{imei}')").first
        expect(row.locator(".badge:has-text('Succeeded')")).to_be_visible(timeout=20000)
        print("commands: set_report_interval succeeded")
        shot(page, shots, "07-commands")

        # -- admin pages -----------------------------------------------------------------------------------
        page.click(".nav >> text=Devices")
        expect(page.locator("tbody tr").first).to_be_visible()
        shot(page, shots, "08-devices")
        page.click("button:has-text('Register device')")
        expect(page.locator(".modal")).to_be_visible()
        page.keyboard.press("Escape")
        page.click(".nav >> text=Users")
        expect(page.locator("tbody tr").first).to_be_visible()
        shot(page, shots, "09-users")
        page.click(".nav >> text=Geofences")
        expect(page.locator(".detail-panel h2, .info-box").first).to_be_visible()
        page.wait_for_timeout(500)
        shot(page, shots, "10-geofences")
        page.click(".nav >> text=Webhooks")
        expect(page.locator(".toolbar h2")).to_have_text("Webhooks")
        page.wait_for_timeout(500)
        shot(page, shots, "11-webhooks")

        # -- a viewer sees no button for changes -------------------------------------------------------
        viewer, viewer_password = f"smoke-viewer-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
        status = page.evaluate(JS_CALL, ["POST", "/api/v1/admin/users",
                                         {"username": viewer, "password": viewer_password, "role": "viewer"}])
        assert status == 201, f"creating the viewer answered {status}"
        sign_out(page)
        sign_in(page, viewer, viewer_password)
        assert page.locator(".nav >> text=Webhooks").count() == 0, "a viewer sees the Webhooks page"
        page.click(".nav >> text=Alarms")
        expect(page.locator("tbody tr").first).to_be_visible(timeout=20000)
        page.locator("tbody tr").first.click()
        expect(page.locator(".detail-panel")).to_be_visible()
        assert page.locator("button:has-text('Ack'), button:has-text('Clear')").count() == 0, "a viewer sees Ack/Clear"
        shot(page, shots, "12-viewer-alarms")
        page.click(".nav >> text=Commands")
        expect(page.locator(".toolbar h2")).to_have_text("Commands")
        assert page.locator(".send-form").count() == 0, "a viewer sees the send form"
        page.click(".nav >> text=Devices")
        expect(page.locator("tbody tr").first).to_be_visible()
        assert page.locator("button:has-text('Register device'), button:has-text('Disable')").count() == 0, \
            "a viewer sees device changes"
        print("viewer: no change buttons on alarms, commands, devices; no webhooks page")
        sign_out(page)
        sign_in(page, username, password)
        watch.expected_failures.add(url + f"/api/v1/admin/users/{viewer}")
        assert page.evaluate(JS_CALL, ["DELETE", f"/api/v1/admin/users/{viewer}", None]) == 204

        # -- sign out --------------------------------------------------------------------------------------
        sign_out(page)
        page.reload()
        expect(page.locator("form.signin")).to_be_visible()
        page.wait_for_timeout(300)

        problems += watch.errors
        problems += [f"request to another origin: {u}" for u in watch.foreign]
        browser.close()
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running dev server (or a truckx server with browser sessions)")
    where.add_argument("--upstream", help="a truckx server: start the dev server in front of it")
    p.add_argument("--username", default="admin")
    p.add_argument("--password-file", required=True)
    p.add_argument("--shots", type=Path, help="directory for the 1280x800 screenshots")
    p.add_argument("--headed", action="store_true")
    args = p.parse_args()
    password = Path(args.password_file).read_text().strip()
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    if args.url:
        problems = run(args.url.rstrip("/"), args.username, password, args.shots, args.headed)
    else:
        with devserver(args.upstream) as url:
            problems = run(url, args.username, password, args.shots, args.headed)
    for problem in problems:
        print("FAIL:", problem)
    print("smoke: ok" if not problems else f"smoke: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
