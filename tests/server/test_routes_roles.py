"""Fail-closed authorisation, proven over the whole routing table.

Statically: every handler has an explicit role rule for every HTTP method it implements (a method
without one is refused with 405 by ``ApiMixin.authenticate``), and every rule is one of the role sets of
``vocab`` (READ, OPERATE, WRITE, AUDIT): every ``/api/v1/admin/*`` read is READ (all three roles) except
the audit log and webhooks (admin only); every change is WRITE (admin only) except the operator's short list
(acknowledge and clear alarms, send and cancel commands) and a user's changes about itself (its password:
the domain allows your own, or anyone's to an admin; signing out); every device route except login needs a device token; the
only public routes are an explicit short list.

Live: every protected operation refuses a request without a token (401), with the wrong kind of token
(403), and with each admin-plane role outside its rule (403, with a message naming the role needed and
what the caller's role may do); each role inside its rule gets past authorisation.
"""

from __future__ import annotations

import uuid

import httpx

from tests.support import RunningServer, new_imei
from tests.server.support import (HTTP_METHODS, implemented_methods, is_websocket, make_user,
                                             route_table)
from truckx_server import vocab

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json"),
          ("POST", "/api/v1/device/login"), ("POST", "/api/v1/admin/login"), ("POST", "/api/v1/admin/session"),
          ("GET", "/"), ("GET", "/static/{}"), ("HEAD", "/static/{}")}
READ_METHODS = {"GET", "HEAD"}
#: the changes an operator may make; every other change is the admin's alone
OPERATOR_CHANGES = {("POST", "/api/v1/admin/alarms/{alarm_id}/ack"), ("POST", "/api/v1/admin/alarms/{alarm_id}/clear"),
                    ("POST", "/api/v1/admin/devices/{imei}/commands"), ("DELETE", "/api/v1/admin/commands/{command_id}")}
#: changes every signed-in user may make about themselves (a password: the domain then allows your own,
#: or anyone's to an admin; signing out)
SELF_SERVICE = {("POST", "/api/v1/admin/users/{username}/password"), ("DELETE", "/api/v1/admin/session")}
#: reads only an admin may make (the audit log; webhook endpoints and deliveries: URLs are sensitive)
ADMIN_READS = {("GET", "/api/v1/admin/audit"), ("GET", "/api/v1/admin/webhooks"),
               ("GET", "/api/v1/admin/webhooks/{webhook_id}"), ("GET", "/api/v1/admin/webhooks/{webhook_id}/deliveries")}
ADMIN_PLANE_ROLES = (vocab.ROLE_ADMIN, vocab.ROLE_OPERATOR, vocab.ROLE_VIEWER)


def operations() -> list[tuple[str, str, type]]:
    return [(method, template, cls) for _pattern, template, cls in route_table()
            for method in sorted(implemented_methods(cls))]


def expected_roles(method: str, template: str) -> tuple[str, ...]:
    key = (method, template)
    if key in OPERATOR_CHANGES:
        return vocab.OPERATE
    if key in SELF_SERVICE:
        return vocab.READ
    if key in ADMIN_READS:
        return vocab.AUDIT
    return vocab.READ if method in READ_METHODS else vocab.WRITE


def test_role_sets() -> None:
    assert set(vocab.ROLES) == {"admin", "operator", "viewer"}
    assert set(vocab.WRITE) < set(vocab.OPERATE) < set(vocab.READ) == set(vocab.ROLES)
    assert vocab.AUDIT == (vocab.ROLE_ADMIN,) and vocab.WRITE == (vocab.ROLE_ADMIN,)
    assert set(vocab.ROLE_CAN) == set(vocab.ROLES)


def test_every_method_has_an_explicit_role_rule() -> None:
    problems = []
    sets = {vocab.READ, vocab.OPERATE, vocab.WRITE, vocab.AUDIT, (vocab.ROLE_DEVICE,)}
    for _pattern, template, cls in route_table():
        implemented = implemented_methods(cls)
        rules = getattr(cls, "roles", {})
        for method in sorted(implemented - set(rules)):
            problems.append(f"{cls.__name__} ({template}) implements {method} without a role rule")
        for method in sorted(set(rules) - implemented):
            problems.append(f"{cls.__name__} ({template}) has a role rule for {method} it does not implement")
        for method, allowed in rules.items():
            if allowed is not None and tuple(allowed) not in sets:
                problems.append(f"{cls.__name__} {method}: roles must be None or one of vocab's role sets")
    assert not problems, "\n".join(problems)


def test_admin_and_device_routes_require_roles() -> None:
    problems = []
    ops = operations()
    assert len(ops) >= 30
    for method, template, cls in ops:
        allowed = cls.roles[method]
        if (method, template) in PUBLIC:
            assert allowed is None, f"{method} {template} should be public"
            continue
        if allowed is None:
            problems.append(f"{method} {template} is public but not in the public list")
        elif template.startswith("/api/v1/admin/"):
            want = expected_roles(method, template)
            if tuple(allowed) != want:
                problems.append(f"{method} {template}: roles {allowed}, expected {want}")
        elif template.startswith("/api/v1/device/"):
            if tuple(allowed) != ("device",):
                problems.append(f"{method} {template}: roles {allowed}, expected ('device',)")
        else:
            problems.append(f"{method} {template}: outside the admin and device planes but not public")
    assert not problems, "\n".join(problems)
    for listed in (OPERATOR_CHANGES, SELF_SERVICE, ADMIN_READS):  # no stale entries
        assert listed <= {(m, t) for m, t, _c in ops}


def concrete(template: str, username: str = "someone") -> str:
    """A request path for a route template, with plausible parameter values."""
    out = template.replace("{imei}", new_imei()).replace("{alarm_id}", str(uuid.uuid4()))
    out = out.replace("{command_id}", str(uuid.uuid4())).replace("{username}", username)
    if "/devices/{}" in out:
        out = out.replace("/devices/{}", "/devices/" + new_imei(), 1)
    return out.replace("{}", "clip.mp4")


async def test_live_requests_are_refused_without_the_right_role(server: RunningServer) -> None:
    users = {"admin": ("admin", await server.admin_headers()),
             "operator": ("roles-operator", await make_user(server, "roles-operator", "operator")),
             "viewer": ("roles-viewer", await make_user(server, "roles-viewer", "viewer"))}
    dev = await server.register()
    device = {"Authorization": f"Bearer {dev.token}"}
    bad = {"Authorization": "Bearer not.a.token"}
    checked = refused = 0
    for method, template, cls in operations():
        if cls.roles[method] is None:
            continue

        async def call(headers: dict[str, str], username: str = "someone") -> httpx.Response:
            return await server.http.request(method, concrete(template, username), headers=headers,
                                             content=b"{}" if method in ("POST", "PATCH", "PUT") else None)

        for headers in ({}, bad):
            r = await call(headers)
            assert r.status_code == 401, f"{method} {template} without a valid token: {r.status_code}"
            if method != "HEAD":
                assert r.json()["error"]["code"] == "unauthorized"
        wrong = device if template.startswith("/api/v1/admin/") else users["admin"][1]
        r = await call(wrong)
        assert r.status_code == 403, f"{method} {template} with the wrong kind of token: {r.status_code}"
        if template.startswith("/api/v1/admin/"):
            allowed = cls.roles[method]
            for role in ADMIN_PLANE_ROLES:
                username, headers = users[role]
                if role not in allowed:
                    r = await call(headers)
                    assert r.status_code == 403, f"{method} {template} as {role}: {r.status_code}"
                    if method != "HEAD":
                        assert r.json()["error"] == {"code": "forbidden", "message": (
                            f"this call needs role {' or '.join(allowed)}; your token has role {role}, "
                            f"which may {vocab.ROLE_CAN[role]}")}
                    refused += 1
                elif not is_websocket(cls):
                    r = await call(headers, username)
                    assert r.status_code not in (401, 403, 405), f"{method} {template} as {role}: {r.status_code}"
        checked += 1
    assert checked >= 25 and refused >= 15


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
