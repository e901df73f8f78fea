"""Geofences across two ``truckx-server`` processes (one MariaDB, one MongoDB, Redis): a fence created or
changed on A is evaluated on B (the bus says which fence changed); a device whose socket moves from B to A
keeps its state (its resent points make no transition, its first point outside is the one exit); the
transitions made on B reach A's event feed."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.support import bearer, eventually
from tests.support import new_imei
from truckx_server.models import format_time, utcnow

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.mongo]

SQUARE = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]]}
BIGGER = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.6], [13.0, 52.6], [13.0, 52.0]]]}
IN, OUT = (52.05, 13.05), (52.5, 13.05)
T0 = (utcnow() - dt.timedelta(hours=1)).replace(microsecond=0)


def at(s: int) -> str:
    return format_time(T0 + dt.timedelta(seconds=s))  # type: ignore[return-value]


class Device:
    def __init__(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.ws, self.seq = ws, 0

    async def send(self, *points: tuple[int, tuple[float, float]]) -> None:
        self.seq += 1
        await self.ws.send({"type": "locations", "seq": self.seq,
                            "points": [{"ts": at(s), "lat": w[0], "lon": w[1]} for s, w in points]})
        await self.ws.wait_ack(self.seq, 10)


async def test_fences_and_state_cross_processes(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    [dev] = a.register([new_imei()])
    imei = dev["imei"]
    async with httpx.AsyncClient(base_url=a.url, headers=bearer(a.admin_token()), timeout=30) as http_a:
        feed = await cluster.event_feed(a, a.admin_token())
        r = await http_a.post("/api/v1/admin/geofences", json={"name": "depot", "geometry": SQUARE})
        assert r.status_code == 201, r.text
        fence_id = r.json()["id"]

        async def transitions() -> list[tuple[str, str]]:
            r = await http_a.get("/api/v1/admin/geofence-events", params={"imei": imei, "limit": 1000})
            return [(e["transition"], e["ts"]) for e in reversed(r.json()["items"])]

        # on B, inside: once B has the fence, the device's first point inside is the enter
        on_b = Device(await cluster.device_ws(b, dev["token"]))
        second = 0

        async def entered() -> list:
            nonlocal second
            second += 1
            await on_b.send((second, IN))
            return await transitions()
        got = await eventually(entered, what="an enter evaluated on B")
        assert len(got) == 1 and got[0][0] == "enter"
        first_inside = got[0][1]
        event = await feed.wait_for(lambda e: e["type"] == "geofence", 10)
        assert event["imei"] == imei and event["geofence_event"]["geofence_id"] == fence_id

        # the socket moves to A; the device resends its last points, then leaves the fence
        on_b.ws.close()
        on_a = Device(await cluster.device_ws(a, dev["token"]))
        await on_a.send(*[(s, IN) for s in range(max(1, second - 3), second + 1)])
        await on_a.send((second + 1, IN), (second + 2, OUT), (second + 3, OUT))
        exits = await eventually(lambda: _exits(transitions), what="the exit evaluated on A")
        assert await transitions() == [("enter", first_inside), ("exit", at(second + 2))]
        assert exits

        # the fence grows on A; B reads it again, and the device (back on B, still at OUT) enters it
        r = await http_a.patch(f"/api/v1/admin/geofences/{fence_id}", json={"geometry": BIGGER})
        assert r.status_code == 200
        on_a.ws.close()
        on_b = Device(await cluster.device_ws(b, dev["token"]))
        second += 3

        async def entered_again() -> list:
            nonlocal second
            second += 1
            await on_b.send((second, OUT))
            got = await transitions()
            return got if len(got) == 3 else []
        got = await eventually(entered_again, what="the grown fence evaluated on B")
        assert got[2][0] == "enter"


async def _exits(transitions) -> bool:  # type: ignore[no-untyped-def]
    return any(t == "exit" for t, _ in await transitions())
