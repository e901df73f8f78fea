"""Scenario 4, command round trip: admin ``POST .../commands`` -> delivered over the device's WebSocket
-> the simulated device answers -> ``succeeded``, observed with ``GET /commands/{id}?wait=10``.
Idle (20 devices) here; the loaded figure (10,000 sessions connected) is measured by s3_storm.py on its
fleet once it has recovered from the restart, so that 10,000 sessions are brought up only once. The
baseline is a bare REST round trip (``GET /healthz``) from the same client, interleaved with the
commands, which bounds what the client and the loop's scheduling add.

Cross-node (when the server has ``--bus-url``): two servers sharing one MariaDB database, one data
directory and Redis; the devices are connected to server A, the commands are posted to and awaited on
server B; the baseline is ``GET /healthz`` on B from the same client."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx

from common import (DATA, Context, Row, TruckxServer, fleet_until, mariadb_fresh, percentile, ratio_row, redis_up,
                    server_supports, unsupported, wait_until)
from truckx_sim import SimConfig


async def measure(url: str, token: str, imeis: list[str], count: int,
                  post_url: str | None = None) -> tuple[list[float], list[float], int]:
    """``count`` sequential commands; returns (round trips ms, healthz ms, not succeeded). ``post_url``:
    the server the commands are posted to and awaited on (default ``url``); healthz is asked there too."""
    headers = {"Authorization": f"Bearer {token}"}
    rtts, base, failed = [], [], 0
    async with httpx.AsyncClient(base_url=post_url or url, headers=headers, timeout=30) as http:
        for i in range(count):
            t = time.perf_counter()
            await http.get("/healthz")
            base.append((time.perf_counter() - t) * 1000)
            imei = imeis[i % len(imeis)]
            t = time.perf_counter()
            r = await http.post(f"/api/v1/admin/devices/{imei}/commands",
                                json={"command": "set_report_interval", "args": {"seconds": 60}})
            if r.status_code != 202:
                failed += 1
                continue
            cmd = r.json()
            while cmd["status"] not in ("succeeded", "failed", "expired", "cancelled"):
                cmd = (await http.get(f"/api/v1/admin/commands/{cmd['id']}", params={"wait": 10})).json()
            rtts.append((time.perf_counter() - t) * 1000)
            failed += cmd["status"] != "succeeded"
    return rtts, base, failed


def fleet_commands(ctx: Context, srv: TruckxServer, n: int, count: int, post_to: TruckxServer | None = None,
                   label: str = "commands-idle") -> tuple[list[float], list[float], int]:
    creds = srv.register(n)
    token = (post_to or srv).admin_token()
    config = SimConfig(url=srv.url, devices=n, duration_s=400, ramp_per_s=2500, report_interval_s=60 if n > 100 else 1,
                       workers=2, drain_timeout_s=10, video_size=0)
    ctx.commands.append(f"truckx-sim --url {srv.url} --devices {n} --report-interval 60 --workers 2; "
                        f"{count} sequential commands (POST + GET ?wait=10)"
                        + (f" posted to a second server {post_to.url}" if post_to else ""))

    async def body(live) -> tuple:  # noqa: ANN001
        if not await wait_until(lambda: live.connected >= n, 200, 0.25):
            raise RuntimeError(f"s4: only {live.connected} of {n} connected")
        await asyncio.sleep(2)
        with ctx.profiler((post_to or srv).pid, label):
            return await measure(srv.url, token, [c["imei"] for c in creds], count,
                                 post_url=post_to.url if post_to else None)

    result, _summary = asyncio.run(fleet_until(config, creds, body, ctx))
    return result


def row(key: str, metric: str, rtts: list[float], base: list[float], failed: int, limit: float | None,
        note: str = "") -> Row:
    p50, p99 = percentile(rtts, 50), percentile(rtts, 99)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    text = f"p50 {p50:.1f} ms (healthz p50 {b50:.1f}); {len(rtts)} commands, {failed} not succeeded" + note
    if limit is None:
        r = Row("4 command round trip", metric, round(p99, 1), "ms", round(b99, 2), "GET /healthz p99 (same client)",
                "(none in issue 14)", None, text, key, "lower", "tail", "info")
        return r
    return ratio_row("4 command round trip", key, metric, round(p99, 1), "ms", round(b99, 2),
                     "GET /healthz p99 (same client)", "lower", limit, "tail", text, also=failed == 0,
                     also_text="all succeed")


def idle(ctx: Context, count: int) -> Row:
    with TruckxServer(DATA / "s4" / "server-20") as srv:
        rtts, base, failed = fleet_commands(ctx, srv, 20, count)
    ctx.say(f"s4 idle: p50 {percentile(rtts, 50):.1f} ms, p99 {percentile(rtts, 99):.1f} ms "
            f"(healthz p99 {percentile(base, 99):.1f} ms)")
    return row("s4.commands_idle", "idle (20 sessions): p99", rtts, base, failed, 2.0)


def cross_node(ctx: Context, count: int) -> Row:
    key, metric = "s4.commands_cross_node", "cross-node (device on A, command posted to B): p99"
    if not server_supports("--bus-url"):
        return unsupported("4 command round trip", key, metric, "truckx-server --help has no --bus-url")
    if not redis_up():
        return Row("4 command round trip", metric, "not measured", "", None, "", "", None,
                   "Redis at 127.0.0.1:6379 does not answer", key, status="failed")
    data = DATA / "s4" / "cluster"
    try:
        sql_url = mariadb_fresh("truckx_bench_cluster")
    except Exception as exc:  # noqa: BLE001 - MariaDB missing: say so in the row
        return Row("4 command round trip", metric, "not measured", "", None, "", "", None,
                   f"MariaDB not reachable: {type(exc).__name__}", key, status="failed")
    # one cluster: same SQL store, same data dir (locations, videos), same bus, same secrets
    env = {"TRUCKX_JWT_SECRET": secrets.token_hex(32), "TRUCKX_DEVICE_HASH_KEY": secrets.token_hex(32)}
    settings = {"sql_url": sql_url, "bus_url": "redis://127.0.0.1:6379/15"}
    a = TruckxServer(data / "server", env=env, **settings)
    b = TruckxServer(data / "server", fresh=False, env=env, **settings)
    try:
        a.start()
        b.start()
        rtts, base, failed = fleet_commands(ctx, a, 20, count, post_to=b, label="commands-cross-node")
    except Exception as exc:  # noqa: BLE001 - a cluster that does not work is this row's result
        return Row("4 command round trip", metric, "not measured", "", None, "", "", False,
                   f"two servers on one MariaDB + Redis did not run: {str(exc)[:300]}", key, status="failed")
    finally:
        b.stop()
        a.stop()
    ctx.say(f"s4 cross-node: p99 {percentile(rtts, 99):.1f} ms (healthz p99 on B {percentile(base, 99):.1f} ms)")
    return row(key, metric, rtts, base, failed, None, "; MariaDB truckx_bench_cluster + Redis db 15, shared data dir")


def run(ctx: Context) -> list[Row]:
    count = 100 if ctx.quick else 300
    rows = [idle(ctx, count), cross_node(ctx, count)]
    if "--loaded" in __import__("sys").argv:  # standalone: python benchmarks/s4_commands.py --loaded
        with TruckxServer(DATA / "s4" / "server-10000") as srv:
            rtts, base, failed = fleet_commands(ctx, srv, 10_000, count, label="commands-loaded")
        rows.append(row("s4.commands_loaded", "loaded (10,000 sessions): p99", rtts, base, failed, 3.0))
    return rows


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
