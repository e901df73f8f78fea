"""Scenario 2, sessions: concurrent authenticated device sessions held by one server process, and the
server's RSS per session over the idle process (registered devices, no sessions).

The fleet is truckx-sim in 2 worker processes over several 127.0.0.x source addresses; every device
logs in through the API, opens its WebSocket and reports every 60 s (idle sessions).
"""

from __future__ import annotations

import asyncio
import time

from common import DATA, Context, Row, TruckxServer, fleet_until, wait_until
from truckx_sim import SimConfig

TARGET = 15_000


def run(ctx: Context) -> list[Row]:
    n = 3000 if ctx.quick else TARGET
    with TruckxServer(DATA / "s2" / "server") as srv:
        creds = srv.register(n)
        time.sleep(1.0)
        rss_idle = srv.rss()
        config = SimConfig(url=srv.url, devices=n, duration_s=240, ramp_per_s=2500, report_interval_s=60,
                           workers=2, backoff_base_s=1.0, backoff_cap_s=10, drain_timeout_s=10, video_size=0)
        ctx.commands.append(f"truckx-sim --url {srv.url} --devices {n} --duration 240 --ramp 2500 "
                            "--report-interval 60 --workers 2 (stopped once all sessions are held)")
        ctx.say(f"s2: idle server RSS {rss_idle / 2**20:.1f} MiB; connecting {n} devices")

        async def body(live) -> dict:  # noqa: ANN001
            t0 = time.monotonic()
            ok = await wait_until(lambda: live.connected >= n, 240, 0.25)
            t_all = time.monotonic() - t0
            await asyncio.sleep(3.0)
            samples = []
            for _ in range(5):
                samples.append(srv.rss())
                await asyncio.sleep(0.4)
            return {"ok": ok, "connected": live.connected, "seconds": t_all, "rss": max(samples),
                    "errors": dict(live.stats.errors) if live.stats else {}}

        res, summary = asyncio.run(fleet_until(config, creds, body, ctx))
    per_session = (res["rss"] - rss_idle) / max(1, res["connected"])
    ctx.say(f"s2: {res['connected']} sessions in {res['seconds']:.1f}s, {per_session / 1024:.1f} KiB/session")
    return [
        Row("2 sessions", "concurrent authenticated sessions held", res["connected"], "sessions", None, "",
            f">= {TARGET:,}", res["connected"] >= TARGET,
            f"all {n} connected in {res['seconds']:.1f}s (logins + WebSocket opens, ramp 2500/s); "
            f"client errors {sum(res['errors'].values())}"),
        Row("2 sessions", "server RSS per session over idle", round(per_session / 1024, 1), "KiB", None, "",
            "<= 25 KB", per_session <= 25 * 1000,
            f"idle {rss_idle / 2**20:.1f} MiB, loaded {res['rss'] / 2**20:.1f} MiB"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
