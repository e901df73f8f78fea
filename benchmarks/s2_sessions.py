"""Scenario 2, sessions: concurrent authenticated device sessions held by one server process, and the
server's RSS per session over the idle process (registered devices, no sessions), against the RSS per
session of a bare Tornado server (bare_ws.py) holding the same number of idle WebSockets from the same
client, in the same run.

The fleet is truckx-sim in 2 worker processes over several 127.0.0.x source addresses; every device
logs in through the API, opens its WebSocket and reports every 60 s (idle sessions). Against the bare
server the same simulator logs in (any credentials are accepted) and connects the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common import (DATA, BareServer, Context, Row, TruckxServer, fake_creds, fleet_until, ratio_row, server_supports,
                    wait_until)
from truckx_sim import SimConfig

#: the fd limit here is 20,000 per process: 19,000 sessions leave room for the server's own files (issue 14)
TARGET = 19_000


def hold(ctx: Context, srv: Any, creds: list[dict[str, str]], n: int, label: str) -> dict:
    """Bring ``n`` simulated devices up against ``srv`` and sample its RSS once all are connected."""
    config = SimConfig(url=srv.url, devices=n, duration_s=300, ramp_per_s=2500, report_interval_s=60,
                       workers=2, source_addresses=8, backoff_base_s=1.0, backoff_cap_s=10, drain_timeout_s=5,
                       video_size=0)
    ctx.commands.append(f"truckx-sim --url <{label}> --devices {n} --duration 300 --ramp 2500 "
                        "--report-interval 60 --workers 2 --source-addresses 8 (stopped once all sessions are held)")

    async def body(live) -> dict:  # noqa: ANN001
        t0 = time.monotonic()
        with ctx.profiler(srv.pid if label == "truckx" else None, "sessions"):
            ok = await wait_until(lambda: live.connected >= n, 300, 0.25)
        t_all = time.monotonic() - t0
        await asyncio.sleep(3.0)
        samples = []
        for _ in range(5):
            samples.append(srv.rss())
            await asyncio.sleep(0.4)
        return {"ok": ok, "connected": live.connected, "seconds": t_all, "rss": max(samples),
                "errors": dict(live.stats.errors) if live.stats else {}}

    res, _summary = asyncio.run(fleet_until(config, creds, body, ctx))
    return res


def run(ctx: Context) -> list[Row]:
    n = 3000 if ctx.quick else TARGET
    data = DATA / "s2"
    with BareServer("bare_ws.py") as bare:
        time.sleep(1.0)
        bare_idle = bare.rss()
        ctx.say(f"s2: bare Tornado sink idle RSS {bare_idle / 2**20:.1f} MiB; connecting {n} devices")
        b = hold(ctx, bare, fake_creds(n), n, "bare_ws.py")
    bare_per = (b["rss"] - bare_idle) / max(1, b["connected"])
    ctx.say(f"s2: bare {b['connected']} sessions in {b['seconds']:.1f}s, {bare_per / 1024:.1f} KiB/session")
    # a server that caps its connections below the descriptor limit (--max-connections, default a fifth
    # of the limit below it) is given room for the target plus the logins' and the admin's connections
    extra = {"max_connections": n + 500} if server_supports("--max-connections") else {}
    with TruckxServer(data / "server", **extra) as srv:
        creds = srv.register(n)
        time.sleep(1.0)
        rss_idle = srv.rss()
        ctx.say(f"s2: idle server RSS {rss_idle / 2**20:.1f} MiB; connecting {n} devices")
        res = hold(ctx, srv, creds, n, "truckx")
    per_session = (res["rss"] - rss_idle) / max(1, res["connected"])
    ctx.say(f"s2: {res['connected']} sessions in {res['seconds']:.1f}s, {per_session / 1024:.1f} KiB/session")
    return [
        Row("2 sessions", "concurrent authenticated sessions held in one process", res["connected"], "sessions",
            None, "", f">= {TARGET:,}", res["connected"] >= TARGET,
            f"{res['connected']:,} of {n:,} connected {'in' if res['ok'] else 'when the wait ended after'} "
            f"{res['seconds']:.1f}s (logins + WebSocket opens, ramp 2500/s; the bare sink: {b['connected']:,} in "
            f"{b['seconds']:.1f}s); client errors {sum(res['errors'].values())}", key="s2.sessions"),
        ratio_row("2 sessions", "s2.rss_per_session", "server RSS per session over idle",
                  round(per_session / 1024, 2), "KiB", round(bare_per / 1024, 2),
                  "bare Tornado server, per idle WebSocket (same client, same count)", "lower", 1.0, "memory",
                  f"truckx idle {rss_idle / 2**20:.1f} MiB, loaded {res['rss'] / 2**20:.1f} MiB; bare idle "
                  f"{bare_idle / 2**20:.1f} MiB, loaded {b['rss'] / 2**20:.1f} MiB with {b['connected']:,} sessions",
                  also=b["connected"] >= n and res["connected"] >= n, also_text="all sessions held"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
