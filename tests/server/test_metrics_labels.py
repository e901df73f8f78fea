"""Prometheus labels come from closed sets: whatever a client sends (made-up methods, random paths), the
request metric gains no label value from it and ``/metrics`` stays small."""

from __future__ import annotations

import re
import secrets

from tests.server.support import route_table
from tests.support import RunningServer

KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
_SAMPLE_RE = re.compile(r'^truckx_http_requests_total\{(?P<labels>.*)\} \S+$', re.MULTILINE)
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def request_series(text: str) -> list[dict[str, str]]:
    return [dict(_LABEL_RE.findall(m["labels"])) for m in _SAMPLE_RE.finditer(text)]


async def test_made_up_methods_and_paths_add_no_label_values(server: RunningServer) -> None:
    before = (await server.http.get("/metrics")).text
    methods = [f"X{secrets.token_hex(4).upper()}" + "A" * 20_000 for _ in range(40)] + ["PROPFIND", "BREW"]
    for method in methods:
        r = await server.http.request(method, "/api/v1/admin/devices")
        assert r.status_code == 405
        assert r.json()["error"]["code"] == "method_not_allowed"
    for _ in range(40):
        r = await server.http.get(f"/no/such/{secrets.token_hex(16)}")
        assert r.status_code == 404
    imei = "356938035643809"
    r = await server.http.get(f"/api/v1/admin/devices/{imei}", headers=await server.admin_headers())
    assert r.status_code == 404

    after = (await server.http.get("/metrics")).text
    # 82 requests with 20 kB methods and random paths: the exposition grows by a few series at most
    assert len(after) - len(before) < 3000, len(after) - len(before)
    series = request_series(after)
    assert series, "the request metric is exposed"
    routes = {template for _rx, template, _cls in route_table()} | {"unmatched"}
    for labels in series:
        assert set(labels) == {"method", "route", "status"}, labels
        assert labels["method"] in KNOWN_METHODS, labels["method"][:40]
        assert labels["route"] in routes, labels["route"][:80]
        assert labels["status"].isdigit() and len(labels["status"]) == 3
    by = {(s["method"], s["route"], s["status"]) for s in series}
    assert ("other", "/api/v1/admin/devices", "405") in by
    assert ("GET", "unmatched", "404") in by
    assert ("GET", "/api/v1/admin/devices/{imei}", "404") in by  # the pattern, not the IMEI asked for
