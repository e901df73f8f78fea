"""Webhooks end to end: a real receiver on 127.0.0.1 that verifies every signature and fails or hangs on
purpose; events written with their change, delivered at least once, in order per endpoint, the same
webhook-id on every retry; timeouts; private addresses refused; roles; the secret shown once."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.server.support import report_alarm
from tests.support import RunningServer, ServerFactory
from tests.webhook_receiver import Receiver, wait_until
from truckx_server.storage.sql.schema import webhooks as webhooks_table

ALL = ["alarm.created", "alarm.acknowledged", "alarm.cleared", "command.finished", "video.uploaded",
       "device.online", "device.offline"]


async def fast_server(server_factory: ServerFactory, **overrides) -> RunningServer:
    values = dict(webhook_deny_private=False, webhook_retry_base_s=0.05, webhook_timeout_s=5.0)
    values.update(overrides)
    return await server_factory(**values)


async def add_hook(server: RunningServer, url: str, events: list[str]) -> dict:
    r = await server.http.post("/api/v1/admin/webhooks", json={"url": url, "events": events},
                               headers=await server.admin_headers())
    assert r.status_code == 201, r.text
    return r.json()


async def deliveries(server: RunningServer, hook_id: str) -> list[dict]:
    r = await server.http.get(f"/api/v1/admin/webhooks/{hook_id}/deliveries", params={"limit": 1000},
                              headers=await server.admin_headers())
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_every_event_arrives_verified_in_order_with_the_same_id_on_retries(
        server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory)
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("s"), fail_first=3) as rx:
        hook = await add_hook(server, rx.url, ALL[:5])
        secret["s"] = hook["secret"]
        assert hook["secret"].startswith("whsec_")
        admin = await server.admin_headers()
        http = server.http
        dev = await server.register()
        dh = {"Authorization": f"Bearer {dev.token}"}

        a = await report_alarm(server, dev)
        # the device resends the same alarm: stored once, announced once
        r = await http.post("/api/v1/device/alarms", json={"id": a["id"], "type": "CRASH",
                                                           "ts": "2026-01-01T00:00:00Z", "lat": 10.0, "lon": 20.0},
                            headers=dh)
        assert r.status_code in (200, 201)
        assert (await http.post(f"/api/v1/admin/alarms/{a['id']}/ack", json={"note": "seen"},
                                headers=admin)).status_code == 200
        assert (await http.post(f"/api/v1/admin/alarms/{a['id']}/clear", headers=admin)).status_code == 200
        b = await report_alarm(server, dev, type="OVERSPEED")
        data = b"video " * 500
        r = await http.put("/api/v1/device/videos/v.mp4", content=data,
                           headers={**dh, "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
        assert r.status_code == 201
        ws = await server.connect(dev)
        r = await http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"}, headers=admin)
        frame = await ws.wait_for(lambda m: m["type"] == "command")
        await ws.send({"type": "command_result", "id": frame["id"], "ok": False, "detail": "busy"})
        r = await http.get(f"/api/v1/admin/commands/{frame['id']}", params={"wait": 5}, headers=admin)
        assert r.json()["status"] == "failed"
        ws.close()
        await ws.wait_closed()
        # a command queued while offline, then cancelled
        cancelled = await http.post(f"/api/v1/admin/devices/{dev.imei}/commands", json={"command": "reset"},
                                    headers=admin)
        assert cancelled.json()["status"] == "queued"
        assert (await http.delete(f"/api/v1/admin/commands/{cancelled.json()['id']}",
                                  headers=admin)).status_code == 200

        expected = ["alarm.created", "alarm.acknowledged", "alarm.cleared", "alarm.created", "video.uploaded",
                    "command.finished", "command.finished"]
        await wait_until(lambda: len({m.msg_id for m in rx.delivered}) >= len(expected), what="all deliveries")
        got = rx.snapshot()
        assert all(m.verified for m in got), [m.headers for m in got if not m.verified]
        # the first 3 attempts failed: all of them the first event, with one webhook-id
        assert len({m.msg_id for m in got[:4]}) == 1 and [m.status for m in got[:4]] == [500, 500, 500, 200]
        delivered = rx.delivered
        ids = [m.msg_id for m in delivered]
        assert len(ids) == len(set(ids)), "a delivery was sent twice after a 2xx"
        types = [m.body["type"] for m in delivered]
        assert types == expected
        assert [m.body["data"]["status"] for m in delivered[:3]] == ["active", "acknowledged", "cleared"]
        assert delivered[0].body["data"]["id"] == a["id"] and delivered[3].body["data"]["id"] == b["id"]
        assert delivered[0].body["timestamp"] == a["ts"]
        assert delivered[2].body["data"] == (await http.get(f"/api/v1/admin/alarms/{a['id']}", headers=admin)).json()
        video = delivered[4].body["data"]
        assert video["imei"] == dev.imei and video["name"] == "v.mp4" and video["complete"] is True
        finished = delivered[5].body["data"]
        assert finished["id"] == frame["id"] and finished["status"] == "failed" and finished["detail"] == "busy"
        assert delivered[6].body["data"]["id"] == cancelled.json()["id"]
        assert delivered[6].body["data"]["status"] == "cancelled"

        listed = await deliveries(server, hook["id"])
        assert [d["message_id"] for d in reversed(listed)] == ids  # newest first
        first = listed[-1]
        assert first["status"] == "delivered" and first["attempts"] == 4 and first["last_status_code"] == 200
        assert all(d["status"] == "delivered" for d in listed)


async def test_a_hanging_receiver_is_timed_out_and_retried(server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory, webhook_timeout_s=0.5)
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("s"), hang_first=1) as rx:
        hook = await add_hook(server, rx.url, ["alarm.created"])
        secret["s"] = hook["secret"]
        dev = await server.register()
        await report_alarm(server, dev)

        async def timed_out() -> dict | None:
            items = await deliveries(server, hook["id"])
            return items[0] if items and items[0]["attempts"] >= 1 else None
        for _ in range(200):
            first = await timed_out()
            if first:
                break
            await asyncio.sleep(0.05)
        assert first and "timed out" in (first["last_error"] or ""), first
        await wait_until(lambda: rx.delivered, what="the retry")
        for _ in range(100):
            items = await deliveries(server, hook["id"])
            if items[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.05)
        assert items[0]["status"] == "delivered" and items[0]["attempts"] == 2
        assert rx.delivered[0].verified and rx.delivered[0].msg_id == items[0]["message_id"]


async def test_a_big_response_is_read_no_further_than_a_small_size(server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory)
    with Receiver(response_bytes=256 * 1024 * 1024) as rx:
        hook = await add_hook(server, rx.url, ["alarm.created"])
        dev = await server.register()
        await report_alarm(server, dev)
        await wait_until(lambda: rx.response_written, what="the receiver to stop writing")
        for _ in range(100):
            items = await deliveries(server, hook["id"])
            if items and items[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.05)
        assert items[0]["status"] == "delivered"
        # the server dropped the connection long before 256 MiB: the receiver's write failed
        assert rx.response_written == [-1]


async def test_private_addresses_are_refused_when_denied(server: RunningServer) -> None:
    admin = await server.admin_headers()
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x", "http://10.1.2.3/x",
                "http://192.168.0.1/x", "http://169.254.169.254/latest", "http://[fd00::1]/x", "http://0.0.0.0/x",
                "http://[::ffff:127.0.0.1]/x", "http://100.64.0.1/x"):
        r = await server.http.post("/api/v1/admin/webhooks", json={"url": url, "events": ["alarm.created"]},
                                   headers=admin)
        assert r.status_code == 400, url
        assert r.json()["error"]["code"] == "invalid_argument"
    for body in ({"url": "ftp://93.184.215.14/x", "events": ["alarm.created"]},
                 {"url": "https://93.184.215.14/x", "events": ["alarm.exploded"]},
                 {"url": "https://93.184.215.14/x", "events": []},
                 {"url": "https://user:pw@93.184.215.14/x", "events": ["alarm.created"]},
                 {"url": "https://93.184.215.14/" + "x" * 2100, "events": ["alarm.created"]},
                 {"url": 7, "events": ["alarm.created"]}):
        r = await server.http.post("/api/v1/admin/webhooks", json=body, headers=admin)
        assert r.status_code == 400, body
    ok = await server.http.post("/api/v1/admin/webhooks", json={"url": "https://93.184.215.14/x",
                                                                "events": ["alarm.created"]}, headers=admin)
    assert ok.status_code == 201
    hook = ok.json()["id"]
    r = await server.http.patch(f"/api/v1/admin/webhooks/{hook}", json={"url": "http://127.0.0.1/x"}, headers=admin)
    assert r.status_code == 400
    r = await server.http.patch(f"/api/v1/admin/webhooks/{hook}", json={"enabled": "yes"}, headers=admin)
    assert r.status_code == 400
    assert (await server.http.get("/api/v1/admin/webhooks/nope", headers=admin)).status_code == 404


async def test_a_private_address_is_checked_again_at_each_delivery(server_factory: ServerFactory) -> None:
    """An endpoint that passed the check when it was made but whose host now points inside (DNS
    rebinding) gets nothing: the address is checked again before connecting."""
    server = await server_factory(webhook_retry_base_s=0.05)  # denied (the default)
    with Receiver() as rx:
        hook = await add_hook(server, "https://93.184.215.14/x", ["alarm.created"])
        # as if the name now resolved to the receiver on the loopback: change the row behind the API's back
        await server.probe.sql.db.execute(webhooks_table.update().where(webhooks_table.c.id == hook["id"])
                                          .values(url=rx.url))
        dev = await server.register()
        await report_alarm(server, dev)
        for _ in range(200):
            items = await deliveries(server, hook["id"])
            if items and items[0]["attempts"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert items[0]["status"] == "pending" and "non-public address" in items[0]["last_error"]
        assert rx.arrivals == 0


async def test_a_private_address_is_allowed_when_not_denied(server_factory: ServerFactory) -> None:
    server = await server_factory(webhook_deny_private=False)
    r = await server.http.post("/api/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["alarm.created"]},
                               headers=await server.admin_headers())
    assert r.status_code == 201


async def test_only_admins_see_or_change_webhooks_and_the_secret_is_shown_once(server: RunningServer) -> None:
    admin = await server.admin_headers()
    http = server.http
    r = await http.post("/api/v1/admin/webhooks", json={"url": "https://93.184.215.14/x", "events": ["alarm.created"],
                                                        "description": "ops"}, headers=admin)
    hook = r.json()
    secret = hook.pop("secret")
    assert len(__import__("base64").b64decode(secret[len("whsec_"):])) >= 24
    assert (await http.get(f"/api/v1/admin/webhooks/{hook['id']}", headers=admin)).json() == hook
    listed = (await http.get("/api/v1/admin/webhooks", headers=admin)).json()
    assert listed["items"] == [hook] and listed["next_cursor"] is None
    for role in ("viewer", "operator"):
        assert (await http.post("/api/v1/admin/users", json={"username": role, "password": "password-" + role * 2,
                                                             "role": role}, headers=admin)).status_code == 201
        token = (await http.post("/api/v1/admin/login", json={"username": role,
                                                              "password": "password-" + role * 2})).json()["token"]
        h = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/api/v1/admin/webhooks", headers=h)).status_code == 403
        assert (await http.post("/api/v1/admin/webhooks", json={"url": "https://93.184.215.14/y",
                                                                "events": ["alarm.created"]}, headers=h)).status_code == 403
        assert (await http.patch(f"/api/v1/admin/webhooks/{hook['id']}", json={"enabled": False},
                                 headers=h)).status_code == 403
        assert (await http.delete(f"/api/v1/admin/webhooks/{hook['id']}", headers=h)).status_code == 403
    r = await http.patch(f"/api/v1/admin/webhooks/{hook['id']}", json={"events": ["alarm.cleared", "alarm.created"]},
                         headers=admin)
    assert r.json()["events"] == ["alarm.cleared", "alarm.created"] and "secret" not in r.json()
    assert (await http.delete(f"/api/v1/admin/webhooks/{hook['id']}", headers=admin)).status_code == 204
    assert (await http.get(f"/api/v1/admin/webhooks/{hook['id']}", headers=admin)).status_code == 404
    audit = (await http.get("/api/v1/admin/audit", params={"target": hook["id"]}, headers=admin)).json()["items"]
    assert [e["action"] for e in audit] == ["webhook.delete", "webhook.update", "webhook.create"]
    assert secret not in str(audit)


async def test_paging_of_endpoints_and_deliveries(server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory)
    admin = await server.admin_headers()
    with Receiver() as rx:
        ids = [(await add_hook(server, rx.url, ["alarm.created"]))["id"] for _ in range(3)]
        page = (await server.http.get("/api/v1/admin/webhooks", params={"limit": 2}, headers=admin)).json()
        rest = (await server.http.get("/api/v1/admin/webhooks", params={"limit": 2, "cursor": page["next_cursor"]},
                                      headers=admin)).json()
        assert [h["id"] for h in page["items"] + rest["items"]] == ids and rest["next_cursor"] is None
        dev = await server.register()
        for _ in range(3):
            await report_alarm(server, dev)
        await wait_until(lambda: len(rx.delivered) == 9, what="9 deliveries")
        first = (await server.http.get(f"/api/v1/admin/webhooks/{ids[0]}/deliveries", params={"limit": 2},
                                       headers=admin)).json()
        second = (await server.http.get(f"/api/v1/admin/webhooks/{ids[0]}/deliveries",
                                        params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)).json()
        got = [d["id"] for d in first["items"] + second["items"]]
        assert len(got) == 3 and got == sorted(got, reverse=True) and second["next_cursor"] is None
        r = await server.http.get(f"/api/v1/admin/webhooks/{ids[0]}/deliveries", params={"cursor": "!"},
                                  headers=admin)
        assert r.status_code == 400


async def test_a_failed_delivery_is_given_up_then_retried_by_hand(server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory, webhook_retry_window_s=0)
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("s"), fail_first=1) as rx:
        hook = await add_hook(server, rx.url, ["alarm.created"])
        secret["s"] = hook["secret"]
        dev = await server.register()
        await report_alarm(server, dev)
        await report_alarm(server, dev)
        await wait_until(lambda: len(rx.snapshot()) >= 2, what="two attempts")
        for _ in range(100):
            items = await deliveries(server, hook["id"])
            if [d["status"] for d in items] == ["delivered", "failed"]:
                break
            await asyncio.sleep(0.05)
        # the first was given up at once (a window of 0 s); the endpoint went on with the next
        assert [d["status"] for d in items] == ["delivered", "failed"]
        failed = items[1]
        r = await server.http.post(f"/api/v1/admin/webhooks/{hook['id']}/deliveries/{failed['id']}/retry",
                                   headers=await server.admin_headers())
        assert r.status_code == 200 and r.json()["status"] == "pending"
        await wait_until(lambda: len(rx.delivered) == 2, what="the retried delivery")
        assert rx.delivered[1].msg_id == failed["message_id"] == rx.snapshot()[0].msg_id
        r = await server.http.post(f"/api/v1/admin/webhooks/{hook['id']}/deliveries/999999/retry",
                                   headers=await server.admin_headers())
        assert r.status_code == 404


@pytest.mark.parametrize("offline_after_s", [1])
async def test_device_offline_after_a_long_drop_and_online_again(server_factory: ServerFactory,
                                                                 offline_after_s: int) -> None:
    server = await fast_server(server_factory, offline_after_s=offline_after_s)
    with Receiver() as rx:
        await add_hook(server, rx.url, ["device.online", "device.offline"])
        dev = await server.register(name="truck 7")
        ws = await server.connect(dev)
        await wait_until(lambda: len(rx.delivered) == 1, what="device.online")
        ws.close()
        await ws.wait_closed()
        await wait_until(lambda: len(rx.delivered) == 2, what="device.offline")
        ws = await server.connect(dev)
        await wait_until(lambda: len(rx.delivered) == 3, what="device.online again")
        bodies = [m.body for m in rx.delivered]
        assert [b["type"] for b in bodies] == ["device.online", "device.offline", "device.online"]
        assert all(b["data"]["imei"] == dev.imei and b["data"]["name"] == "truck 7" for b in bodies)
        assert [b["data"]["online"] for b in bodies] == [True, False, True]
        assert bodies[1]["data"]["last_seen"] is not None
        ws.close()


async def test_a_short_drop_sends_nothing(server_factory: ServerFactory) -> None:
    server = await fast_server(server_factory, offline_after_s=60)
    with Receiver() as rx:
        await add_hook(server, rx.url, ["device.online", "device.offline", "alarm.created"])
        dev = await server.register()
        ws = await server.connect(dev)
        await wait_until(lambda: len(rx.delivered) == 1, what="device.online")
        for _ in range(3):
            ws.close()
            await ws.wait_closed()
            ws = await server.connect(dev)
        await report_alarm(server, dev)  # in order per endpoint: anything before it has arrived with it
        await wait_until(lambda: len(rx.delivered) == 2, what="the alarm")
        await asyncio.sleep(0.5)  # room for a wrong late event to show up
        assert [m.body["type"] for m in rx.delivered] == ["device.online", "alarm.created"]
        ws.close()


def test_signature_matches_the_standard_webhooks_example_and_the_receivers_check() -> None:
    from tests.webhook_receiver import verify
    from truckx_server.domain.webhooks import sign
    # the example of the Standard Webhooks reference libraries' tests
    secret, msg_id, body = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}'
    assert sign(secret, msg_id, 1614265330, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    import time
    now = int(time.time())
    assert verify(secret, msg_id, str(now), body, sign(secret, msg_id, now, body))
    assert not verify(secret, msg_id, str(now), body + b" ", sign(secret, msg_id, now, body))
    assert not verify(secret, msg_id, str(now - 3600), body, sign(secret, msg_id, now - 3600, body))  # too old


@pytest.mark.parametrize("address, allowed", [
    ("93.184.215.14", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.0.0.1", False),
    ("172.16.5.4", False), ("192.168.1.1", False), ("169.254.169.254", False), ("0.0.0.0", False), ("::", False),
    ("::1", False), ("fe80::1", False), ("fd12:3456::1", False), ("100.64.1.1", False), ("224.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("::ffff:93.184.215.14", True)])
def test_which_addresses_deliveries_may_go_to(address: str, allowed: bool) -> None:
    from truckx_server.domain.webhooks import address_allowed
    assert address_allowed(address) is allowed
