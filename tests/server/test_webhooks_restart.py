"""Deliveries survive the server: an event recorded while its receiver is down is sent after the server
is killed (SIGKILL, no shutdown of any kind) and started again, once the receiver is up. Real server
processes (tests/process.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.process import ServerProcess, free_port
from tests.webhook_receiver import Receiver, wait_until

pytestmark = pytest.mark.slow


async def test_an_event_recorded_before_a_crash_is_delivered_after_the_restart(tmp_path) -> None:
    port = free_port()  # the receiver's, down for now: every attempt before the crash fails
    args = ("--webhook-deny-private", "false", "--webhook-retry-base-s", "0.2", "--webhook-timeout-s", "2")
    srv = ServerProcess(tmp_path / "data", *args).start()
    try:
        admin = {"Authorization": f"Bearer {srv.admin_token()}"}
        r = httpx.post(srv.url + "/api/v1/admin/webhooks", headers=admin,
                       json={"url": f"http://127.0.0.1:{port}/hook", "events": ["alarm.created", "alarm.cleared"]})
        assert r.status_code == 201, r.text
        hook = r.json()
        dev = srv.register(["356938035643809"])[0]
        r = httpx.post(srv.url + "/api/v1/device/alarms", headers={"Authorization": f"Bearer {dev['token']}"},
                       json={"type": "CRASH", "ts": "2026-11-29T10:00:00Z", "lat": 1.0, "lon": 2.0})
        assert r.status_code == 201, r.text
        alarm = r.json()
        r = httpx.post(srv.url + f"/api/v1/admin/alarms/{alarm['id']}/clear", headers=admin)
        assert r.status_code == 200
        srv.kill()

        with Receiver(secret_of=lambda: hook["secret"], port=port) as rx:
            srv.start()
            await wait_until(lambda: len(rx.delivered) >= 2, timeout=60, what="the deliveries after the restart")
            got = rx.delivered
            assert [m.body["type"] for m in got] == ["alarm.created", "alarm.cleared"]
            assert all(m.verified for m in got)
            assert got[0].body["data"]["id"] == alarm["id"] and got[1].body["data"]["status"] == "cleared"
            admin = {"Authorization": f"Bearer {srv.admin_token()}"}
            listed = httpx.get(srv.url + f"/api/v1/admin/webhooks/{hook['id']}/deliveries", headers=admin).json()
            assert [d["status"] for d in listed["items"]] == ["delivered", "delivered"]
            assert [d["message_id"] for d in reversed(listed["items"])] == [m.msg_id for m in got]
    except BaseException:
        print(srv.log_text())
        raise
    finally:
        srv.stop()
