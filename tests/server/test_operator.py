"""The operator role: reads everything but the audit log; acknowledges and clears alarms; sends and
cancels commands; changes nothing else (devices, users). Each refusal is a 403 that names the role needed
and what an operator may do."""

from __future__ import annotations

from tests.support import RunningServer, new_imei
from tests.server.support import make_user, report_alarm

OPERATOR_MAY = "which may read, acknowledge and clear alarms, and send and cancel commands"


async def test_operator_acks_clears_and_commands_but_registers_nothing(api: RunningServer) -> None:
    op = await make_user(api, "opal", "operator")
    dev = await api.register()
    alarm = await report_alarm(api, dev)
    for path in ("/api/v1/admin/devices", f"/api/v1/admin/devices/{dev.imei}", "/api/v1/admin/alarms",
                 "/api/v1/admin/users", "/api/v1/admin/commands", f"/api/v1/admin/devices/{dev.imei}/locations"):
        assert (await api.http.get(path, headers=op)).status_code == 200, path

    r = await api.http.post(f"/api/v1/admin/alarms/{alarm['id']}/ack", json={"note": "on it"}, headers=op)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "opal"
    r = await api.http.post(f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=op)
    assert r.status_code == 200 and r.json()["cleared_by"] == "opal" and r.json()["status"] == "cleared"

    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=op)
    assert r.status_code == 202 and r.json()["created_by"] == "opal"
    r = await api.http.delete(f"/api/v1/admin/commands/{r.json()['id']}", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    imei = new_imei()
    refusals = [("POST", "/api/v1/admin/devices", {"imei": imei}, "admin"),
                ("PATCH", f"/api/v1/admin/devices/{dev.imei}", {"enabled": False}, "admin"),
                ("POST", f"/api/v1/admin/devices/{dev.imei}/secret", None, "admin"),
                ("POST", "/api/v1/admin/users", {"username": "x", "password": "x" * 12}, "admin"),
                ("DELETE", "/api/v1/admin/users/admin", None, "admin"),
                ("PATCH", "/api/v1/admin/users/opal", {"role": "admin"}, "admin"),
                ("GET", "/api/v1/admin/audit", None, "admin")]
    for method, path, body, needed in refusals:
        r = await api.http.request(method, path, json=body, headers=op)
        assert r.status_code == 403, (method, path)
        assert r.json()["error"] == {"code": "forbidden", "message": (
            f"this call needs role {needed}; your token has role operator, {OPERATOR_MAY}")}, (method, path)
    assert await api.probe.sql.devices.get(imei) is None
    assert (await api.probe.sql.devices.get(dev.imei))["enabled"]
    assert (await api.probe.sql.users.get("opal"))["role"] == "operator"


async def test_viewer_may_not_ack_or_send(api: RunningServer) -> None:
    viewer = await make_user(api, "vic", "viewer")
    dev = await api.register(login=False)
    r = await api.http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=viewer)
    assert r.status_code == 403
    assert r.json()["error"]["message"] == ("this call needs role admin or operator; your token has role viewer, "
                                            "which may only read")
    assert (await api.http.get("/api/v1/admin/commands", params={"imei": dev.imei}, headers=viewer)).json()["items"] == []


async def test_operator_accounts_are_created_listed_and_log_in(api: RunningServer) -> None:
    await make_user(api, "ops", "operator")
    r = await api.http.get("/api/v1/admin/users", headers=await api.admin_headers())
    assert {u["username"]: u["role"] for u in r.json()["items"]}["ops"] == "operator"
    r = await api.http.post("/api/v1/admin/login", json={"username": "ops", "password": "viewer-password-123"})
    assert r.status_code == 200 and r.json()["role"] == "operator"
