"""``truckx-server --workers N``: refused without a bus or with the SQLite location store (exit code 2,
one line); with them, N processes share the port, each a node of the cluster; a killed worker is started
again; SIGTERM stops them all and the parent exits 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.support import bearer, eventually, location
from tests.support import new_imei

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("args, reason", [
    (["--workers", "2"], "needs --bus-url"),
    (["--workers", "2", "--bus-url", "redis://127.0.0.1:6379/0"], "needs --locations-url mongodb://"),
])
def test_refused_with_stores_the_workers_cannot_share(tmp_path: Path, args: list[str], reason: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "truckx_server", "--data-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], proc.stderr
    assert not any(tmp_path.iterdir()), "nothing was started"


@pytest.mark.mariadb
@pytest.mark.mongo
async def test_two_workers_share_the_port(cluster: Cluster) -> None:
    srv = cluster.node("w", "--workers", "2")
    parent = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=srv.url, headers=bearer(srv.admin_token()), timeout=30) as http:
        async def nodes() -> dict[str, dict]:
            items = (await http.get("/api/v1/admin/nodes")).json()["items"]
            return {n["node_id"]: n for n in items}

        assert set(await eventually(lambda: _both(nodes), what="two workers listed")) == {"w-1", "w-2"}
        # devices connect through the one port and land on both workers (the kernel spreads them)
        devices = srv.register([new_imei() for _ in range(24)])
        sockets = [await cluster.device_ws(srv, d["token"]) for d in devices]
        for ws in sockets:
            await ws.send(location(1, 1))
            await ws.wait_ack(1)

        async def spread() -> dict[str, dict]:
            found = await nodes()
            counts = [n["sessions"] for n in found.values()]
            return found if sum(counts) == len(devices) and min(counts) > 0 else {}
        await eventually(spread, what="sessions on both workers")
        # a command reaches every device, whichever worker holds it and whichever answered the POST
        for d, ws in zip(devices, sockets):
            r = await http.post(f"/api/v1/admin/devices/{d['imei']}/commands", json={"command": "reset"})
            assert r.status_code == 202
            frame = await ws.wait_for(lambda m: m["type"] == "command", 10)
            assert frame["id"] == r.json()["id"]

        # a worker killed outright is started again by the parent
        before = await nodes()
        first = parent.children()
        assert len(first) == 2
        victim = first[0]
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 10)

        async def replaced() -> list:
            kids = parent.children()
            return kids if len(kids) == 2 and victim.pid not in {k.pid for k in kids} else []
        await eventually(replaced, timeout=30, what="the killed worker started again")

        async def restarted() -> bool:  # the new worker joined under the same name, started afresh
            found = await nodes()
            return set(found) == {"w-1", "w-2"} and any(
                found[n]["started_at"] > before[n]["started_at"] for n in found)
        await eventually(restarted, timeout=30, what="the new worker listed")
        # the port keeps answering admin calls, whichever worker takes them
        r = await http.post(f"/api/v1/admin/devices/{devices[0]['imei']}/commands", json={"command": "reset"})
        assert r.status_code == 202

    # SIGTERM to the parent stops every worker, in order, and the parent exits 0
    children = parent.children()
    assert await asyncio.to_thread(srv.stop) == 0, srv.log_text()
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


async def _both(nodes) -> dict:  # type: ignore[no-untyped-def]
    found = await nodes()
    return found if len(found) == 2 else {}
