"""Scenario 4, command round trip: admin ``POST .../commands`` -> delivered over the device's WebSocket
-> the simulated device answers -> ``succeeded``, observed with ``GET /commands/{id}?wait=10``.
Idle (20 devices) here; the loaded figure (10,000 sessions connected) is measured by s3_storm.py on its
fleet once it has recovered from the restart, so that 10,000 sessions are brought up only once. The baseline is a bare REST round trip
(``GET /healthz``) from the same client, which bounds what the client itself adds."""

from __future__ import annotations

import asyncio
import time

import httpx

from common import DATA, Context, Row, TruckxServer, fleet_until, percentile, wait_until
from truckx_sim import SimConfig


async def measure(url: str, token: str, imeis: list[str], count: int) -> tuple[list[float], list[float], int]:
    headers = {"Authorization": f"Bearer {token}"}
    rtts, base, failed = [], [], 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
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
            while cmd["status"] not in ("succeeded", "failed", "expired"):
                cmd = (await http.get(f"/api/v1/admin/commands/{cmd['id']}", params={"wait": 10})).json()
            rtts.append((time.perf_counter() - t) * 1000)
            failed += cmd["status"] != "succeeded"
    return rtts, base, failed


def one(ctx: Context, label: str, n: int, count: int, target_ms: float) -> list[Row]:
    with TruckxServer(DATA / "s4" / f"server-{n}") as srv:
        creds = srv.register(n)
        token = srv.admin_token()
        config = SimConfig(url=srv.url, devices=n, duration_s=400, ramp_per_s=2500, report_interval_s=60 if n > 100 else 1,
                           workers=2, drain_timeout_s=10, video_size=0)
        ctx.commands.append(f"truckx-sim --url {srv.url} --devices {n} --report-interval 60 --workers 2; "
                            f"{count} sequential commands (POST + GET ?wait=10)")

        async def body(live) -> tuple:  # noqa: ANN001
            if not await wait_until(lambda: live.connected >= n, 200, 0.25):
                raise RuntimeError(f"s4: only {live.connected} of {n} connected")
            await asyncio.sleep(2)
            return await measure(srv.url, token, [c["imei"] for c in creds], count)

        (rtts, base, failed), _summary = asyncio.run(fleet_until(config, creds, body, ctx))
    p50, p99 = percentile(rtts, 50), percentile(rtts, 99)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    ctx.say(f"s4 {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (healthz p99 {b99:.1f} ms)")
    return [Row("4 command round trip", f"{label} ({n:,} sessions): p99", round(p99, 1), "ms", round(b99, 1),
                "GET /healthz p99 (same client)", f"<= {target_ms:.0f} ms", p99 <= target_ms and failed == 0,
                f"p50 {p50:.1f} ms (healthz p50 {b50:.1f}); {len(rtts)} commands, {failed} not succeeded")]


def run(ctx: Context) -> list[Row]:
    rows = one(ctx, "idle", 20, 100 if ctx.quick else 300, 20)
    if "--loaded" in __import__("sys").argv:  # standalone: python benchmarks/s4_commands.py --loaded
        rows += one(ctx, "loaded", 10_000, 300, 100)
    return rows


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
