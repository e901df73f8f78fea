"""Webhooks across processes: two real nodes sharing MariaDB, MongoDB and Redis, both running a
dispatcher, send each event once (no double sends in normal operation), in order; when the node holding a
device's socket is killed, the survivor announces device.offline once, and device.online when the device
comes back to it."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.support import bearer
from tests.support import new_imei
from tests.webhook_receiver import Receiver, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.mongo]

ARGS = ("--webhook-deny-private", "false", "--webhook-retry-base-s", "0.1", "--offline-after-s", "2")


async def test_two_dispatchers_send_each_event_once_and_offline_is_announced_by_the_survivor(
        cluster: Cluster) -> None:
    a, b = cluster.node("a", *ARGS), cluster.node("b", *ARGS)
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("s")) as rx:
        token = a.admin_token()
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(a.url + "/api/v1/admin/webhooks", headers=bearer(token),
                                json={"url": rx.url, "events": ["alarm.created", "device.online", "device.offline"]})
            assert r.status_code == 201, r.text
            secret["s"] = r.json()["secret"]
            dev = a.register([new_imei()])[0]
            sent = []
            for i in range(20):  # alternately on each node, one after the other
                node = (a, b)[i % 2]
                alarm_id = str(uuid.uuid4())
                r = await http.post(node.url + "/api/v1/device/alarms", headers=bearer(dev["token"]),
                                    json={"id": alarm_id, "type": "CRASH", "ts": "2026-11-29T10:00:00Z",
                                          "lat": 1.0, "lon": 2.0})
                assert r.status_code == 201, r.text
                sent.append(alarm_id)
            await wait_until(lambda: len(rx.delivered) >= 20, timeout=60, what="20 deliveries")
            await asyncio.sleep(0.5)  # room for a double send to show up
            got = rx.delivered
            assert len(got) == 20 and len({m.msg_id for m in got}) == 20, "an event was sent twice"
            assert [m.body["data"]["id"] for m in got] == sent  # in event order
            assert all(m.verified for m in got)

            ws = await cluster.device_ws(a, dev["token"])
            await wait_until(lambda: len(rx.delivered) == 21, timeout=30, what="device.online")
            await asyncio.to_thread(a.kill)
            await wait_until(lambda: len(rx.delivered) == 22, timeout=90, what="device.offline from B")
            ws.close()
            await cluster.device_ws(b, dev["token"])
            await wait_until(lambda: len(rx.delivered) == 23, timeout=30, what="device.online on B")
            await asyncio.sleep(0.5)
            events = [m.body for m in rx.delivered[20:]]
            assert [e["type"] for e in events] == ["device.online", "device.offline", "device.online"]
            assert all(e["data"]["imei"] == dev["imei"] for e in events)
            assert len(rx.delivered) == 23
