"""Scenario 3, reconnect storm: 10,000 connected devices; the server restarts (SIGTERM, ordered
shutdown, start again on the same data); every device logs in again and reconnects at once (backoff
with jitter), resends what was not acknowledged, and we time until all are connected and nothing older
than the restart is unacknowledged. Then every generated point is checked against locations.db.

Scenario 4's loaded half (command round trips with 10,000 sessions connected) runs on this same fleet
once it has recovered, so the 10,000 sessions are brought up once per ``make bench``."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from common import DATA, Context, Row, TruckxServer, fleet_until, percentile, wait_until
from s4_commands import measure
from truckx_sim import SimConfig

TARGET = 10_000


def run(ctx: Context) -> list[Row]:
    n = 2000 if ctx.quick else TARGET
    commands = 100 if ctx.quick else 300
    srv = TruckxServer(DATA / "s3" / "server")
    srv.data_dir.parent.mkdir(parents=True, exist_ok=True)
    srv.start()
    try:
        creds = srv.register(n)
        config = SimConfig(url=srv.url, devices=n, duration_s=600, ramp_per_s=1000, report_interval_s=20,
                           workers=2, backoff_base_s=0.5, backoff_cap_s=8, relogin_on_reconnect=True,
                           drain_timeout_s=20, collect_points=True, video_size=0)
        ctx.commands.append(f"truckx-sim --url {srv.url} --devices {n} --ramp 1000 --report-interval 20 --workers 2 "
                            "--relogin, server restarted with SIGTERM once all are connected")
        ctx.say(f"s3: connecting {n} devices")

        async def body(live) -> dict:  # noqa: ANN001
            ok = await wait_until(lambda: live.connected >= n, 240, 0.25)
            if not ok:
                return {"ok": False, "why": f"only {live.connected} connected before the restart"}
            await asyncio.sleep(3)
            ctx.say("s3: all connected; restarting the server")
            t_stop = time.monotonic()
            stop_s = await asyncio.to_thread(srv.stop)
            await asyncio.to_thread(srv.start)
            t_ready = time.monotonic()
            ctx.say(f"s3: server stopped in {stop_s:.1f}s, up again after {t_ready - t_stop:.1f}s")
            # wait until the fleet notices the restart, then until all are back and caught up
            await wait_until(lambda: live.connected < n, 10, 0.1)
            all_conn = await wait_until(lambda: live.connected >= n, 150, 0.1)
            t_conn = time.monotonic()
            caught_up = await wait_until(
                lambda: live.connected >= n and live.gauges.get("oldest_unacked_s", 99) < 3.0, 60, 0.1)
            t_acked = time.monotonic()
            loaded = None
            if all_conn:
                await asyncio.sleep(2)
                ctx.say(f"s3/s4: command round trips with {live.connected} sessions connected")
                loaded = await measure(srv.url, srv.admin_token(), [c["imei"] for c in creds], commands)
            return {"loaded": loaded, "ok": all_conn and caught_up, "connect_s": t_conn - t_ready, "acked_s": t_acked - t_ready,
                    "stop_s": stop_s, "down_s": t_ready - t_stop, "connected": live.connected,
                    "errors": dict(live.stats.errors)}

        res, summary = asyncio.run(fleet_until(config, creds, body, ctx))
    finally:
        srv.stop()
    if "connect_s" not in res:
        return [Row("3 reconnect storm", "all reconnected and acked", None, "s", None, "", "<= 30 s", False, res["why"])]
    db = sqlite3.connect(srv.data_dir / "locations.db")
    stored: dict[str, set[int]] = {}
    for imei, ts in db.execute("SELECT imei, ts FROM locations"):
        stored.setdefault(imei, set()).add(ts)
    lost = extra = generated = 0
    for imei, dev in summary.devices.items():
        gen = set(dev.generated_us)
        generated += len(gen)
        got = stored.get(imei, set())
        lost += len(gen - got)
        extra += len(got - gen)
    ctx.say(f"s3: reconnected in {res['connect_s']:.1f}s, caught up in {res['acked_s']:.1f}s; lost {lost} of {generated}")
    rows = []
    if res.get("loaded"):
        rtts, base, failed = res["loaded"]
        p50, p99, b50, b99 = percentile(rtts, 50), percentile(rtts, 99), percentile(base, 50), percentile(base, 99)
        ctx.say(f"s4 loaded: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        rows.append(Row("4 command round trip", f"loaded ({n:,} sessions): p99", round(p99, 1), "ms", round(b99, 1),
                        "GET /healthz p99 (same client)", "<= 100 ms", p99 <= 100 and failed == 0,
                        f"p50 {p50:.1f} ms (healthz p50 {b50:.1f}); {len(rtts)} sequential commands, {failed} not "
                        "succeeded; measured on scenario 3's fleet after it recovered"))
    return rows + [
        Row("3 reconnect storm", f"{n:,} devices: all logged in + reconnected after restart", round(res["connect_s"], 1),
            "s", None, "", "<= 30 s", res["ok"] and res["connect_s"] <= 30,
            f"server stop (ordered) {res['stop_s']:.1f}s, down {res['down_s']:.1f}s in all; client errors "
            f"{sum(res['errors'].values())} (refused/handshake during the restart, retried with backoff)"),
        Row("3 reconnect storm", "all connected and every pre-restart point acked", round(res["acked_s"], 1), "s",
            None, "", "<= 30 s", res["ok"] and res["acked_s"] <= 30, "oldest unacknowledged point < 3 s old"),
        Row("3 reconnect storm", "points lost / duplicated", f"{lost} / {extra}", "", None, "",
            "nothing lost", lost == 0 and extra == 0 and summary.to_json()["points_unacked"] == 0,
            f"{generated:,} points generated, all compared with locations.db"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
