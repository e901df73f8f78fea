"""The fleet console in a real browser (Chromium driven by Playwright) against a real server fed by
``truckx-sim``: sign in, the live map, a device's track, an alarm's thumbnail and video, acknowledging
it, a command, the admin pages, a geofence and a webhook made in the page and the crossing they report,
what a viewer may not do, sign-out; the CSP of every page; no console
error and no request to another origin than this server's and the tile server's. Each page is
photographed at 1280x800 into docs/screenshots/.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (ROUTE, TILE_ORIGIN, Fleet, Watch, api_json, rfc3339, send_points, shot,
                                    wait_until)
from tests.process import ADMIN_PASSWORD
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]
# the machine may be busy: wait up to 15 s for what should show (conditions, never fixed sleeps)
expect.set_options(timeout=15_000)

#: a same-origin API call from the page, as the console makes it (XSRF header from the _xsrf cookie);
#: resolves to [status, body]
JS_CALL = """async ([method, path, body, withXsrf]) => {
    const m = /(?:^|;\\s*)_xsrf=([^;]*)/.exec(document.cookie);
    const headers = {'Content-Type': 'application/json'};
    if (withXsrf) headers['X-XSRFToken'] = m ? m[1] : '';
    const r = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
    return [r.status, await r.text()];
}"""

CSP_REQUIRED = {"script-src": "'self'", "connect-src": "'self'", "style-src": "'self'", "media-src": "'self'",
                "object-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'",
                "img-src": f"'self' {TILE_ORIGIN}"}


def sign_in(page: Any, username: str, password: str) -> None:
    expect(page.locator("form.signin")).to_be_visible()
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.locator(".topbar")).to_be_visible()
    expect(page.locator(".live-live")).to_be_visible(timeout=15000)  # the events feed is up


def sign_out(page: Any) -> None:
    page.click("button:has-text('Sign out')")
    expect(page.locator("form.signin")).to_be_visible()


def markers(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("() => window.truckxConsole ? window.truckxConsole.markers() : []")


def report_location(fleet: Fleet, seq: int, lat: float, lon: float) -> None:
    """A location of the evidence device, now; returns once the server acked it."""
    send_points(fleet.url, fleet.evidence.token, seq,
                [{"ts": rfc3339(time.time()), "lat": lat, "lon": lon, "speed_kmh": 30.0}])


def test_admin_walkthrough(watched: tuple[Any, Watch], fleet: Fleet) -> None:
    page, watch = watched
    url = fleet.url

    # -- sign in -------------------------------------------------------------------------------------
    response = page.goto(url + "/")
    assert response is not None and response.status == 200
    expect(page.locator("form.signin")).to_be_visible()
    shot(page, "01-signin")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".error-box")).to_be_visible()
    sign_in(page, "admin", ADMIN_PASSWORD)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["truckx_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
    assert not cookies["_xsrf"]["httpOnly"]

    # a change made with the cookie but without the XSRF header is refused, with the JSON error body
    watch.allow_failure(url + "/api/v1/admin/users")
    status, body = page.evaluate(JS_CALL, ["POST", "/api/v1/admin/users",
                                           {"username": "xsrf-victim", "password": "long enough password"}, False])
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    assert "xsrf-victim" not in json.dumps(api_json(fleet, "GET", "/api/v1/admin/users"))

    # -- the fleet map: every reporting device, moving live ----------------------------------------------
    page.wait_for_function("(n) => window.truckxConsole && window.truckxConsole.markers().length >= n",
                           arg=len(fleet.sim_imeis), timeout=20000)
    drawn = {m["imei"] for m in markers(page)}
    assert set(fleet.sim_imeis) <= drawn
    before = {m["imei"]: (m["lat"], m["lon"]) for m in markers(page)}
    moved = page.wait_for_function(
        """(before) => window.truckxConsole.markers().find(
               (m) => before[m.imei] && (m.lat !== before[m.imei][0] || m.lon !== before[m.imei][1]))""",
        arg=before, timeout=20000).json_value()
    assert moved["imei"] in fleet.sim_imeis and moved["online"]
    # the evidence device is where its track ended; a location it reports, once acked, moves its marker
    at = "([imei, lat, lon]) => window.truckxConsole.markers().some((m) => m.imei === imei && " \
         "m.lat === lat && m.lon === lon)"
    page.wait_for_function(at, arg=[fleet.evidence.imei, *ROUTE[-1]], timeout=10000)
    report_location(fleet, 2, 52.5200, 13.4050)
    page.wait_for_function(at, arg=[fleet.evidence.imei, 52.5200, 13.4050], timeout=10000)
    assert len(markers(page)) == len(fleet.sim_imeis) + 1
    shot(page, "02-fleet-map")
    page.locator(".device-row:has-text('truck-evidence')").click()
    expect(page.locator(".details h2")).to_have_text("truck-evidence")
    expect(page.locator(".mini-list, .details .empty").first).to_be_visible(timeout=10000)
    shot(page, "03-fleet-device")

    # -- a device's track, with playback ------------------------------------------------------------
    page.click(".details >> text=Track")
    expect(page.locator(".track-summary")).to_be_visible(timeout=20000)
    # the window ends at the current minute: the route's points, not the one reported just now
    expect(page.locator(".track-summary strong").first).to_have_text(str(len(ROUTE)))
    expect(page.locator(".playback")).to_be_visible()
    page.click(".playback .play")
    page.wait_for_timeout(1000)
    page.click(".playback .play")
    shot(page, "04-track")

    # -- the alarm: thumbnail, video, acknowledge --------------------------------------------------------
    page.click(".nav >> text=Alarms")
    row = page.locator(f"tbody tr:has-text('{fleet.evidence.imei}')").first
    expect(row).to_be_visible(timeout=20000)
    shot(page, "05-alarms")
    row.click()
    panel = page.locator(".detail-panel")
    expect(panel).to_be_visible()
    thumb = panel.locator("button.thumb img")
    expect(thumb).to_be_visible(timeout=10000)
    page.wait_for_function("() => { const i = document.querySelector('.detail-panel button.thumb img');"
                           " return i && i.complete && i.naturalWidth === 320; }", timeout=10000)
    shot(page, "06-alarm")
    panel.locator("button.thumb").first.click()
    expect(panel.locator("video")).to_be_visible()
    page.wait_for_function("() => document.querySelector('.detail-panel video').currentTime > 0.5", timeout=20000)
    assert page.evaluate("() => document.querySelector('.detail-panel video').src").endswith(
        f"/api/v1/admin/devices/{fleet.evidence.imei}/videos/{fleet.evidence.video}")
    panel.locator(".lifecycle button:has-text('Acknowledge')").click()
    page.fill(".detail-panel .lifecycle input.note", "seen on the video")
    page.click(".detail-panel .lifecycle button:has-text('Confirm acknowledge')")
    expect(panel.locator(".badge:has-text('Acknowledged')")).to_be_visible(timeout=10000)
    shot(page, "07-alarm-video")
    stored = api_json(fleet, "GET", f"/api/v1/admin/alarms/{fleet.evidence.alarm_id}")
    assert stored["status"] == "acknowledged" and stored["acknowledged_by"] == "admin"
    assert stored["ack_note"] == "seen on the video"

    # -- a command, seen succeeding live -------------------------------------------------------------------
    page.click(".nav >> text=Commands")
    expect(page.locator(".send-form")).to_be_visible()
    target = moved["imei"]
    page.fill(".send-form input[list]", target)
    page.select_option(".send-form select", "set_report_interval")
    page.fill(".send-form input[type=number]", "1")
    page.click(".send-form button[type=submit]")
    expect(page.locator(f"tbody tr:has-text('{target}')").first.locator(".badge:has-text('Succeeded')")).to_be_visible(
        timeout=20000)
    shot(page, "08-commands")

    # -- the admin pages -------------------------------------------------------------------------------------
    page.click(".nav >> text=Devices")
    expect(page.locator(f"tbody tr:has-text('{fleet.evidence.imei}')")).to_be_visible()
    shot(page, "09-devices")
    page.click(".nav >> text=Users")
    expect(page.locator("tbody tr:has-text('admin')").first).to_be_visible()
    shot(page, "10-users")

    # -- sign out: the session is over on the server too --------------------------------------------------
    sign_out(page)
    page.reload()
    expect(page.locator("form.signin")).to_be_visible()
    r = httpx.get(url + "/api/v1/admin/session", cookies={"truckx_session": session["value"]}, timeout=10)
    assert r.status_code == 401
    watch.assert_clean()


def test_a_viewer_cannot_change_anything(watched: tuple[Any, Watch], fleet: Fleet) -> None:
    page, watch = watched
    password = "viewer password 1234"
    api_json(fleet, "POST", "/api/v1/admin/users", json={"username": "browser-viewer", "password": password,
                                                        "role": "viewer"})
    try:
        page.goto(fleet.url + f"/#/alarms?id={fleet.evidence.alarm_id}")
        sign_in(page, "browser-viewer", password)
        panel = page.locator(".detail-panel")
        expect(panel).to_be_visible(timeout=15000)
        expect(panel.locator("button.thumb img")).to_be_visible()
        assert page.locator("button:has-text('Ack'), button:has-text('Clear')").count() == 0
        assert page.locator(".nav >> text=Webhooks").count() == 0
        shot(page, "11-viewer-alarm")
        # the server refuses what the page does not offer, even with the XSRF header
        path = f"/api/v1/admin/alarms/{fleet.evidence.alarm_id}/clear"
        watch.allow_failure(fleet.url + path)
        status, body = page.evaluate(JS_CALL, ["POST", path, None, True])
        assert status == 403 and "needs role admin" in json.loads(body)["error"]["message"]
        page.click(".nav >> text=Commands")
        expect(page.locator(".toolbar h2")).to_have_text("Commands")
        assert page.locator(".send-form").count() == 0
        page.click(".nav >> text=Devices")
        expect(page.locator("tbody tr").first).to_be_visible()
        assert page.locator("button:has-text('Register device'), button:has-text('Disable')").count() == 0
        sign_out(page)
    finally:
        api_json(fleet, "DELETE", "/api/v1/admin/users/browser-viewer")
    watch.assert_clean()


def test_every_page_has_the_csp_and_asks_only_this_server_and_the_tiles(watched: tuple[Any, Watch],
                                                                       fleet: Fleet) -> None:
    page, watch = watched
    page.goto(fleet.url + "/")
    sign_in(page, "admin", ADMIN_PASSWORD)
    routes = ["map", f"map?imei={fleet.evidence.imei}", f"track?imei={fleet.evidence.imei}", "alarms",
              f"alarms?id={fleet.evidence.alarm_id}", "commands", "devices", "users", "geofences", "webhooks"]
    for route in routes:
        page.goto("about:blank")
        response = page.goto(f"{fleet.url}/#/{route}")
        assert response is not None and response.status == 200, route
        policy = response.headers["content-security-policy"]
        directives = {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in policy.split(";")) if d}
        for name, value in CSP_REQUIRED.items():
            assert directives.get(name) == value, (route, name, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"]
        expect(page.locator(".topbar")).to_be_visible()
        page.wait_for_load_state("load")
    assert watch.documents and all("content-security-policy" in d.headers for d in watch.documents)
    watch.assert_clean()


def test_a_geofence_crossing_shows_live_and_reaches_a_webhook_made_in_the_page(watched: tuple[Any, Watch],
                                                                             fleet: Fleet) -> None:
    page, watch = watched
    depot = (52.5300, 13.4150)  # about 1.3 km from where the walkthrough left the evidence device
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("value")) as rx:
        page.goto(fleet.url + "/#/webhooks")
        sign_in(page, "admin", ADMIN_PASSWORD)
        expect(page.locator(".toolbar h2")).to_have_text("Webhooks")
        page.click("button:has-text('New webhook')")
        page.fill(".modal input[type=url]", rx.url)
        page.uncheck(".modal label.check:has-text('alarm.created') input")
        page.check(".modal label.check:has-text('geofence.enter') input")
        page.click(".modal button[type=submit]")
        secret["value"] = page.input_value(".modal .secret input")
        assert secret["value"].startswith("whsec_")
        page.click(".modal button:has-text('Done')")
        hook_row = page.locator(f"tbody tr:has-text('{rx.url}')")
        expect(hook_row.locator(".chip:has-text('geofence.enter')")).to_be_visible()
        shot(page, "12-webhooks")

        # a circle around the depot, for the evidence device only, entered as GeoJSON
        page.click(".nav >> text=Geofences")
        page.click(".create-fence button:has-text('GeoJSON')")
        page.fill(".create-fence input[maxlength='128']", "depot")
        page.fill(".create-fence textarea", json.dumps({"type": "Circle", "center": [depot[1], depot[0]],
                                                        "radius_m": 300}))
        page.locator(".create-fence label:has-text('Devices') input").fill(fleet.evidence.imei)
        page.click(".create-fence button[type=submit]")
        expect(page.locator(".fence-row:has-text('depot')")).to_be_visible()
        [fence] = [f for f in api_json(fleet, "GET", "/api/v1/admin/geofences")["items"] if f["name"] == "depot"]
        assert fence["imeis"] == [fleet.evidence.imei] and fence["geometry"]["radius_m"] == 300

        # the truck drives into the depot: the crossing shows without a reload, and the webhook gets it
        report_location(fleet, 3, *depot)
        expect(page.locator(".crossing:has-text('truck-evidence')")).to_contain_text("Enter", timeout=20000)
        shot(page, "13-geofences")
        arrived = wait_until(lambda: [m for m in rx.snapshot() if m.body["type"] == "geofence.enter"], 30,
                             "the geofence.enter webhook")
        body = arrived[0].body
        assert arrived[0].verified, "the signature does not verify with the secret the page showed"
        assert body["data"]["imei"] == fleet.evidence.imei and body["data"]["geofence_id"] == fence["id"]
        assert (body["data"]["lat"], body["data"]["lon"]) == depot

        # and the page lists the delivery as delivered
        page.click(".nav >> text=Webhooks")
        page.locator(f"tbody tr:has-text('{rx.url}') button:has-text('Deliveries')").click()
        expect(page.locator(".modal tbody tr:has-text('geofence.enter') .badge")).to_have_text("delivered")
    watch.assert_clean()
