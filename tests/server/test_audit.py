"""The audit log (``GET /api/v1/admin/audit``): one entry per change made through the admin plane, with
the right actor, newest first, filtered and keyset-paged, admins only; no secret, password or hash ever
in it; details bounded; a change that fails leaves no entry. And the entry type's own rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support import RunningServer, new_imei
from tests.server.support import VIEWER_PASSWORD, make_user, report_alarm
from truckx_server import vocab
from truckx_server.models import (AUDIT_DETAIL_MAX, AUDIT_TARGET_MAX, AUDIT_TEXT_MAX, AuditEntry, audit_detail,
                                  parse_time)


async def audit(api: RunningServer, **params: Any) -> list[dict[str, Any]]:
    """Every entry matching ``params``, following next_cursor."""
    admin = await api.admin_headers()
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await api.http.get("/api/v1/admin/audit", params={**params, **({"cursor": cursor} if cursor else {})},
                               headers=admin)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def test_every_admin_plane_change_is_audited_with_its_actor(api: RunningServer) -> None:
    admin = await api.admin_headers()
    http = api.http
    ada = await make_user(api, "ada", "admin", password="ada-password-123")
    op = await make_user(api, "opie", "operator")

    one, two, three = new_imei(), new_imei(), new_imei()
    r = await http.post("/api/v1/admin/devices", json={"imei": one, "name": "truck 1"}, headers=admin)
    secrets = [r.json()["secret"]]
    r = await http.post("/api/v1/admin/devices", json={"devices": [{"imei": two}, {"imei": three}]}, headers=ada)
    secrets += [d["secret"] for d in r.json()["devices"]]
    await http.patch(f"/api/v1/admin/devices/{one}", json={"name": "truck one", "enabled": False}, headers=ada)
    await http.patch(f"/api/v1/admin/devices/{one}", json={"enabled": True}, headers=admin)
    r = await http.post(f"/api/v1/admin/devices/{two}/secret", headers=ada)
    secrets.append(r.json()["secret"])

    await http.post("/api/v1/admin/users", json={"username": "vic", "password": VIEWER_PASSWORD}, headers=ada)
    await http.patch("/api/v1/admin/users/vic", json={"role": "operator"}, headers=admin)
    await http.post("/api/v1/admin/users/vic/password", json={"password": "vic-second-password"}, headers=ada)
    await http.delete("/api/v1/admin/users/vic", headers=admin)

    dev = await api.register()
    secrets.append(dev.secret)
    alarm = await report_alarm(api, dev)
    await http.post(f"/api/v1/admin/alarms/{alarm['id']}/ack", json={"note": "n" * 2000}, headers=op)
    await http.post(f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=op)
    r = await http.post(f"/api/v1/admin/devices/{three}/commands",
                        json={"command": "set_report_interval", "args": {"seconds": 9}}, headers=op)
    cmd = r.json()["id"]
    assert (await http.delete(f"/api/v1/admin/commands/{cmd}", headers=op)).status_code == 200
    r = await http.put("/api/v1/device/videos/clip.mp4", content=b"x" * 100,
                       headers={"Authorization": f"Bearer {dev.token}"})
    assert r.status_code == 201
    assert (await http.delete(f"/api/v1/admin/devices/{dev.imei}/videos/clip.mp4", headers=ada)).status_code == 204
    r = await http.post("/api/v1/admin/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["alarm.created"]},
                        headers=ada)
    hook = r.json()["id"]
    await report_alarm(api, dev)
    for _ in range(100):
        deliveries = (await http.get(f"/api/v1/admin/webhooks/{hook}/deliveries", headers=admin)).json()["items"]
        if deliveries:
            break
        await asyncio.sleep(0.05)
    await http.patch(f"/api/v1/admin/webhooks/{hook}", json={"enabled": False}, headers=admin)
    delivery = deliveries[0]["id"]
    assert (await http.post(f"/api/v1/admin/webhooks/{hook}/deliveries/{delivery}/retry",
                            headers=ada)).status_code == 200
    assert (await http.delete(f"/api/v1/admin/webhooks/{hook}", headers=ada)).status_code == 204
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    r = await http.post("/api/v1/admin/geofences", json={"name": "yard", "geometry": square}, headers=ada)
    fence = r.json()["id"]
    await http.patch(f"/api/v1/admin/geofences/{fence}", json={"name": "yard 2"}, headers=admin)
    await http.delete(f"/api/v1/admin/geofences/{fence}", headers=ada)

    entries = await audit(api)
    times = [parse_time(e["at"]) for e in entries]
    assert times == sorted(times, reverse=True)  # newest first
    got = [(e["actor"], e["action"], e["target"]) for e in reversed(entries)]
    assert got == [
        ("admin", "user.create", "ada"),
        ("admin", "user.create", "opie"),
        ("admin", "device.register", one),
        ("ada", "device.register", two),
        ("ada", "device.register", three),
        ("ada", "device.rename", one),
        ("ada", "device.disable", one),
        ("admin", "device.enable", one),
        ("ada", "device.rotate_secret", two),
        ("ada", "user.create", "vic"),
        ("admin", "user.role", "vic"),
        ("ada", "user.password", "vic"),
        ("admin", "user.delete", "vic"),
        ("admin", "device.register", dev.imei),
        ("opie", "alarm.ack", alarm["id"]),
        ("opie", "alarm.clear", alarm["id"]),
        ("opie", "command.send", cmd),
        ("opie", "command.cancel", cmd),
        ("ada", "video.delete", f"{dev.imei}/clip.mp4"),
        ("ada", "webhook.create", hook),
        ("admin", "webhook.update", hook),
        ("ada", "webhook.retry", f"{hook}/{delivery}"),
        ("ada", "webhook.delete", hook),
        ("ada", "geofence.create", fence),
        ("admin", "geofence.update", fence),
        ("ada", "geofence.delete", fence),
    ]
    assert {a for _actor, a, _t in got} == set(vocab.AUDIT_ACTIONS)  # every action seen
    by = {(e["action"], e["target"]): e for e in entries}
    assert by[("device.register", one)]["detail"] == {"name": "truck 1"}
    assert by[("device.rename", one)]["detail"] == {"name": "truck one"}
    assert by[("user.role", "vic")]["detail"] == {"from": "viewer", "to": "operator"}
    assert by[("user.create", "vic")]["detail"] == {"role": "viewer"}
    assert by[("command.send", cmd)]["detail"] == {"imei": three, "command": "set_report_interval",
                                                  "args": {"seconds": 9}, "ttl_s": 3600}
    assert by[("command.cancel", cmd)]["detail"] == {"imei": three, "command": "set_report_interval"}
    assert by[("video.delete", f"{dev.imei}/clip.mp4")]["detail"] == {
        "imei": dev.imei, "name": "clip.mp4", "size": 100, "complete": True, "evidence": [], "forced": False}
    note = by[("alarm.ack", alarm["id"])]["detail"]["note"]
    assert len(note) == AUDIT_TEXT_MAX and note.startswith("nnn")  # bounded

    # never a secret, a password or a hash
    text = json.dumps(entries)
    stored = [u["password_hash"] for u in [await api.probe.sql.users.get(n) for n in ("admin", "ada", "opie")]]
    for secret in secrets + stored + [VIEWER_PASSWORD, "vic-second-password", "ada-password-123"]:
        assert secret not in text
    assert "$argon2" not in text


async def test_filters_paging_and_admin_only(api: RunningServer) -> None:
    admin = await api.admin_headers()
    for i in range(7):
        await api.http.post("/api/v1/admin/devices", json={"imei": new_imei()}, headers=admin)
    ops = await make_user(api, "ops", "operator")
    viewer = await make_user(api, "vee", "viewer")
    every = await audit(api)
    assert len(every) == 9
    paged = await audit(api, limit=2)
    assert paged == every  # pages of 2, following next_cursor, give the same list
    assert [e["action"] for e in await audit(api, action="user.create")] == ["user.create"] * 2
    assert len(await audit(api, action=["user.create", "device.register"])) == 9
    assert await audit(api, actor="ops") == []
    assert len(await audit(api, actor="admin")) == 9
    assert [e["target"] for e in await audit(api, target="vee")] == ["vee"]
    middle = every[4]["at"]
    assert await audit(api, since=middle) == every[:5]  # since is inclusive
    assert await audit(api, until=middle) == every[5:]  # until exclusive
    for headers in (ops, viewer):
        r = await api.http.get("/api/v1/admin/audit", headers=headers)
        assert r.status_code == 403 and "needs role admin" in r.json()["error"]["message"]
    for params in ({"action": "device.explode"}, {"since": "yesterday"}, {"cursor": "bm9wZQ"}, {"limit": 0},
                   {"actor": "x" * 200}):
        r = await api.http.get("/api/v1/admin/audit", params=params, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument", params


async def test_a_failed_change_leaves_no_entry(api: RunningServer) -> None:
    admin = await api.admin_headers()
    dev = await api.register()
    alarm = await report_alarm(api, dev)
    before = await audit(api)
    http = api.http
    assert (await http.post("/api/v1/admin/devices", json={"imei": dev.imei}, headers=admin)).status_code == 409
    assert (await http.patch(f"/api/v1/admin/devices/{new_imei()}", json={"name": "x"}, headers=admin)).status_code == 404
    assert (await http.post(f"/api/v1/admin/devices/{new_imei()}/secret", headers=admin)).status_code == 404
    assert (await http.delete("/api/v1/admin/users/nobody", headers=admin)).status_code == 404
    assert (await http.patch("/api/v1/admin/users/admin", json={"role": "viewer"}, headers=admin)).status_code == 409
    assert (await http.patch("/api/v1/admin/users/admin", json={"role": "admin"}, headers=admin)).status_code == 200
    await http.post(f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=admin)
    after_clear = await audit(api)
    assert (await http.post(f"/api/v1/admin/alarms/{alarm['id']}/ack", headers=admin)).status_code == 409
    assert (await http.post(f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=admin)).status_code == 409
    assert [e["action"] for e in after_clear[:-len(before)]] == ["alarm.clear"]
    assert await audit(api) == after_clear


def test_audit_entries_bound_their_detail_and_refuse_secrets() -> None:
    entry = AuditEntry("ann", "device.rename", "x" * 500, {"name": "n" * 5000, "list": list(range(100))})
    assert len(entry.target) == AUDIT_TARGET_MAX and len(entry.detail["name"]) == AUDIT_TEXT_MAX
    assert len(entry.detail["list"]) == 21 and entry.detail["list"][-1] == "\u2026"
    huge = audit_detail({f"k{i}": "v" * 199 for i in range(100)})
    assert huge == {"truncated": True}
    assert len(json.dumps(audit_detail({"a": "b" * 199}))) < AUDIT_DETAIL_MAX
    assert audit_detail({}) is None and audit_detail(None) is None
    for key in ("secret", "password", "new_password", "token", "password_hash", "Secret"):
        with pytest.raises(ValueError):
            AuditEntry("ann", "user.create", "bob", {key: "x"})
    with pytest.raises(ValueError):
        AuditEntry("ann", "user.create", "bob", {"nested": {"token": "x"}})
    with pytest.raises(ValueError, match="vocab.AUDIT_ACTIONS"):
        AuditEntry("ann", "device.explode", "x")
