"""Scenario 3, reconnect storm: 10,000 connected devices; the server restarts (SIGTERM, ordered
shutdown, start again on the same data); every device logs in again and reconnects at once (backoff
with jitter), resends what was not acknowledged, and we time until all are connected and nothing older
than the restart is unacknowledged. Then every generated point is checked against locations.db.

Baseline, same run: the same simulator, the same fleet size and settings against the bare Tornado sink
(bare_ws.py, which accepts any login and acknowledges every frame), restarted the same way and kept
down exactly as long as the real server was down (stop + start), so the clients' backoff sees the same
outage; timed from "ready again" to "all connected and acked", like the real one.

Scenario 4's loaded half (command round trips with 10,000 sessions connected) runs on the real fleet
once it has recovered, so the 10,000 sessions are brought up once per ``make bench``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Callable

from common import (DATA, BareServer, Context, Row, TruckxServer, fake_creds, fleet_until, percentile, ratio_row,
                    wait_until)
from s4_commands import measure
from truckx_sim import SimConfig

TARGET = 10_000


def storm(ctx: Context, srv: Any, creds: list[dict[str, str]], n: int, label: str,
          hold_down_s: float | None = None, after: Callable[[Any], Any] | None = None) -> tuple[dict, Any]:
    """Connect ``n`` devices to ``srv``, restart it, time the recovery. ``hold_down_s``: keep the server
    down this long in all (stop + start) before starting it again. ``after(live)``: awaited once all
    are back (the loaded command round trips)."""
    config = SimConfig(url=srv.url, devices=n, duration_s=600, ramp_per_s=1000, report_interval_s=20,
                       workers=2, source_addresses=8, backoff_base_s=0.5, backoff_cap_s=8, relogin_on_reconnect=True,
                       drain_timeout_s=20, collect_points=label == "truckx", video_size=0)
    ctx.commands.append(f"truckx-sim --url <{label}> --devices {n} --ramp 1000 --report-interval 20 --workers 2 "
                        "--source-addresses 8 --relogin, server restarted with SIGTERM once all are connected")

    async def body(live) -> dict:  # noqa: ANN001
        ok = await wait_until(lambda: live.connected >= n, 240, 0.25)
        if not ok:
            return {"ok": False, "why": f"only {live.connected} connected before the restart"}
        await asyncio.sleep(3)
        ctx.say(f"s3 {label}: all connected; restarting the server")
        t_stop = time.monotonic()
        stop_s = await asyncio.to_thread(srv.stop)
        if hold_down_s is not None:
            # start it so that it answers when the real server did: its start takes what the last one took
            await asyncio.sleep(max(0.0, hold_down_s - (time.monotonic() - t_stop) - getattr(srv, "start_s", 0.0)))
        await asyncio.to_thread(srv.start)
        t_ready = time.monotonic()
        ctx.say(f"s3 {label}: server stopped in {stop_s:.1f}s, up again after {t_ready - t_stop:.1f}s")
        # wait until the fleet notices the restart, then until all are back and caught up
        await wait_until(lambda: live.connected < n, 10, 0.1)
        with ctx.profiler(srv.pid if label == "truckx" else None, "storm"):
            all_conn = await wait_until(lambda: live.connected >= n, 150, 0.1)
            t_conn = time.monotonic()
            caught_up = await wait_until(
                lambda: live.connected >= n and live.gauges.get("oldest_unacked_s", 99) < 3.0, 60, 0.1)
            t_acked = time.monotonic()
        extra = None
        if all_conn and after is not None:
            await asyncio.sleep(2)
            extra = await after(live)
        return {"extra": extra, "ok": all_conn and caught_up, "connect_s": t_conn - t_ready,
                "acked_s": t_acked - t_ready, "stop_s": stop_s, "down_s": t_ready - t_stop,
                "connected": live.connected, "errors": dict(live.stats.errors)}

    return asyncio.run(fleet_until(config, creds, body, ctx))


def run(ctx: Context) -> list[Row]:
    n = 2000 if ctx.quick else TARGET
    commands = 100 if ctx.quick else 300
    srv = TruckxServer(DATA / "s3" / "server")
    srv.start()
    try:
        creds = srv.register(n)
        ctx.say(f"s3: connecting {n} devices")

        async def loaded(live) -> Any:  # noqa: ANN001
            ctx.say(f"s3/s4: command round trips with {live.connected} sessions connected")
            with ctx.profiler(srv.pid, "commands-loaded"):
                return await measure(srv.url, srv.admin_token(), [c["imei"] for c in creds], commands)

        res, summary = storm(ctx, srv, creds, n, "truckx", after=loaded)
    finally:
        srv.stop()
    if "connect_s" not in res:
        return [Row("3 reconnect storm", "all reconnected and acked", None, "s", None, "", "<= 1.5x", False, res["why"],
                    key="s3.storm_acked", status="failed")]
    db = sqlite3.connect(srv.data_dir / "locations.db")
    stored: dict[str, set[int]] = {}
    for imei, ts in db.execute("SELECT imei, ts FROM locations"):
        stored.setdefault(imei, set()).add(ts)
    lost = missing = extra = generated = 0
    unacked = summary.to_json()["points_unacked"]
    for imei, dev in summary.devices.items():
        gen = set(dev.generated_us)
        generated += len(gen)
        got = stored.get(imei, set())
        missing += len(gen - got)
        # a point the device still holds unacknowledged when the fleet stops may be missing; more than
        # that missing means an acknowledged point was lost
        lost += max(0, len(gen - got) - dev.unacked)
        extra += len(got - gen)
    ctx.say(f"s3: reconnected in {res['connect_s']:.1f}s, caught up in {res['acked_s']:.1f}s; "
            f"acknowledged but lost {lost}; missing {missing} of {generated} ({unacked} never acknowledged)")
    nothing_lost = lost == 0 and extra == 0 and unacked == 0

    ctx.say(f"s3: baseline: the same storm on the bare sink, kept down {res['down_s']:.1f}s")
    with BareServer("bare_ws.py") as bare:
        bres, _ = storm(ctx, bare, fake_creds(n), n, "bare_ws.py", hold_down_s=res["down_s"])
    if "connect_s" not in bres:
        bres = {"connect_s": None, "acked_s": None, "errors": {}, "down_s": 0, "ok": False}
    else:
        ctx.say(f"s3: bare sink: reconnected in {bres['connect_s']:.1f}s, caught up in {bres['acked_s']:.1f}s")
    # a storm that did not recover within the waits has no duration to compare
    value = round(res["acked_s"], 1) if res["ok"] else None
    baseline = round(bres["acked_s"], 2) if bres["ok"] else None

    rows = []
    if res.get("extra"):
        rtts, base, failed = res["extra"]
        p50, p99, b50, b99 = percentile(rtts, 50), percentile(rtts, 99), percentile(base, 50), percentile(base, 99)
        ctx.say(f"s4 loaded: p50 {p50:.1f} ms, p99 {p99:.1f} ms (healthz p99 {b99:.1f} ms)")
        rows.append(ratio_row("4 command round trip", "s4.commands_loaded", f"loaded ({n:,} sessions): p99",
                              round(p99, 1), "ms", round(b99, 2), "GET /healthz p99 (same client)", "lower", 3.0,
                              "tail",
                              f"p50 {p50:.1f} ms (healthz p50 {b50:.1f}); {len(rtts)} sequential commands, {failed} "
                              "not succeeded; measured on scenario 3's fleet after it recovered",
                              also=failed == 0, also_text="all succeed"))
    bare_note = (f"bare sink: {'' if bres['ok'] else 'NOT recovered: '}connected {bres['connect_s']:.1f}s, acked "
                 f"{bres['acked_s']:.1f}s after it was up, down {bres['down_s']:.1f}s, client errors "
                 f"{sum(bres['errors'].values())}") if bres["connect_s"] is not None else "bare sink storm failed"
    real_note = "" if res["ok"] else (f"NOT recovered within the waits (150 s to connect, 60 s more to ack): "
                                      f"{res['connected']:,} connected; ")
    return rows + [
        ratio_row("3 reconnect storm", "s3.storm_acked",
                  f"{n:,} devices: all reconnected and every pre-restart point acked", value, "s",
                  baseline, "same storm on the bare sink (same client)", "lower", 1.5, "time",
                  f"{real_note}all logged in + connected after {res['connect_s']:.1f}s; server stop (ordered) "
                  f"{res['stop_s']:.1f}s, "
                  f"down {res['down_s']:.1f}s in all; client errors {sum(res['errors'].values())} (refused/handshake "
                  f"during the restart, retried with backoff); {bare_note}",
                  also=res["ok"] and nothing_lost, also_text="nothing lost"),
        Row("3 reconnect storm", "acknowledged points lost / duplicated", f"{lost} / {extra}", "", None, "",
            "nothing lost, everything acked", nothing_lost,
            f"{generated:,} points generated, all compared with locations.db; {unacked:,} still unacknowledged when "
            f"the fleet stopped ({missing:,} missing from the store)", key="s3.lost"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
