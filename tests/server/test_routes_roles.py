"""Fail-closed authorisation, proven over the whole routing table.

Statically: every handler has an explicit role rule for every HTTP method it implements (a method
without one is refused with 405 by ``ApiMixin.authenticate``); every ``/api/v1/admin/*`` route except
login needs admin or viewer, and every change needs admin; every device route except login needs a
device token; the only public routes are an explicit short list.

Live: every protected operation refuses a request without a token (401), with the wrong kind of token
(403), and every change refuses a viewer (403 with a message naming the role needed).
"""

from __future__ import annotations

import uuid

import httpx

from tests.support import RunningServer, new_imei
from tests.server.support import (HTTP_METHODS, implemented_methods, is_websocket, make_user,
                                             route_table)

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
          ("POST", "/api/v1/device/login"), ("POST", "/api/v1/admin/login"), ("POST", "/api/v1/admin/session"),
          ("GET", "/"), ("GET", "/static/{}"), ("HEAD", "/static/{}")}
READ_METHODS = {"GET", "HEAD"}
#: changes every signed-in user may make about themselves (not only admins)
SELF_SERVICE = {("DELETE", "/api/v1/admin/session")}


def operations() -> list[tuple[str, str, type]]:
    return [(method, template, cls) for _pattern, template, cls in route_table()
            for method in sorted(implemented_methods(cls))]


def test_every_method_has_an_explicit_role_rule() -> None:
    problems = []
    for _pattern, template, cls in route_table():
        implemented = implemented_methods(cls)
        rules = getattr(cls, "roles", {})
        for method in sorted(implemented - set(rules)):
            problems.append(f"{cls.__name__} ({template}) implements {method} without a role rule")
        for method in sorted(set(rules) - implemented):
            problems.append(f"{cls.__name__} ({template}) has a role rule for {method} it does not implement")
        for method, allowed in rules.items():
            if allowed is not None and (not allowed or not set(allowed) <= {"device", "admin", "viewer"}):
                problems.append(f"{cls.__name__} {method}: roles must be None or a non-empty tuple of known roles")
    assert not problems, "\n".join(problems)


def test_admin_and_device_routes_require_roles() -> None:
    problems = []
    ops = operations()
    assert len(ops) >= 25
    for method, template, cls in ops:
        allowed = cls.roles[method]
        if (method, template) in PUBLIC:
            assert allowed is None, f"{method} {template} should be public"
            continue
        if allowed is None:
            problems.append(f"{method} {template} is public but not in the public list")
        elif template.startswith("/api/v1/admin/"):
            want = {"admin", "viewer"} if method in READ_METHODS or (method, template) in SELF_SERVICE else {"admin"}
            if set(allowed) != want:
                problems.append(f"{method} {template}: roles {allowed}, expected {sorted(want)}")
        elif template.startswith("/api/v1/device/"):
            if tuple(allowed) != ("device",):
                problems.append(f"{method} {template}: roles {allowed}, expected ('device',)")
        else:
            problems.append(f"{method} {template}: outside the admin and device planes but not public")
    assert not problems, "\n".join(problems)


def concrete(template: str) -> str:
    """A request path for a route template, with plausible parameter values."""
    out = template.replace("{imei}", new_imei()).replace("{alarm_id}", str(uuid.uuid4()))
    out = out.replace("{command_id}", str(uuid.uuid4())).replace("{username}", "someone")
    if "/devices/{}" in out:
        out = out.replace("/devices/{}", "/devices/" + new_imei(), 1)
    return out.replace("{}", "clip.mp4")


async def test_live_requests_are_refused_without_the_right_role(server: RunningServer) -> None:
    admin = await server.admin_headers()
    viewer = await make_user(server, "roles-viewer", "viewer")
    dev = await server.register()
    device = {"Authorization": f"Bearer {dev.token}"}
    bad = {"Authorization": "Bearer not.a.token"}
    checked = 0
    for method, template, cls in operations():
        if cls.roles[method] is None:
            continue
        path = concrete(template)

        async def call(headers: dict[str, str]) -> httpx.Response:
            return await server.http.request(method, path, headers=headers,
                                             content=b"{}" if method in ("POST", "PATCH", "PUT") else None)

        for headers in ({}, bad):
            r = await call(headers)
            assert r.status_code == 401, f"{method} {template} without a valid token: {r.status_code}"
            if method != "HEAD":
                assert r.json()["error"]["code"] == "unauthorized"
        wrong = device if template.startswith("/api/v1/admin/") else admin
        r = await call(wrong)
        assert r.status_code == 403, f"{method} {template} with the wrong kind of token: {r.status_code}"
        admin_only = method not in READ_METHODS and (method, template) not in SELF_SERVICE
        if template.startswith("/api/v1/admin/") and admin_only:
            r = await call(viewer)
            assert r.status_code == 403, f"{method} {template} as viewer: {r.status_code}"
            assert r.json()["error"] == {"code": "forbidden",
                                         "message": "this call needs role admin; your token has role viewer"}
        elif template.startswith("/api/v1/admin/") and not is_websocket(cls):
            r = await call(viewer)
            assert r.status_code not in (401, 403, 405), f"{method} {template} as viewer: {r.status_code}"
        checked += 1
    assert checked >= 20


async def test_methods_without_a_rule_are_refused(server: RunningServer) -> None:
    admin = await server.admin_headers()
    for _pattern, template, cls in route_table():
        if is_websocket(cls):
            continue
        for method in sorted(set(HTTP_METHODS) - set(cls.roles)):
            r = await server.http.request(method, concrete(template), headers=admin)
            assert r.status_code == 405, f"{method} {template}: {r.status_code}"
            if method != "HEAD":
                assert r.json()["error"]["code"] == "method_not_allowed"
