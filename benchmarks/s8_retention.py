"""Scenario 8, retention under ingest load: a retention pass deleting a large backlog of old points must
not raise the devices' ack p99 by more than 2x.

1. Seed: the real server (SQLite stores, retention off) takes a backlog of points 40 days old through
   ``wsflood.py`` (batched ``locations`` messages), then stops.
2. Baseline: the server restarts on that data with retention off and takes a steady load
   (``DEVICES`` devices, one ``location`` each every ``1/RATE`` s, recent timestamps); the ack latency
   of every message is kept with the time it was sent, and the ``BASELINE_S`` from 10 s after start
   count (the same offset as the pass in step 3: the first seconds after a restart are slower).
3. Measure: the server restarts on the same data with ``--retain-locations-days 30``; its first pass
   starts 10 s after start, under the same load. ``/metrics`` is polled for
   ``truckx_retention_removed_total`` (set when the pass ends) to know when the pass ended.
4. Compare: ack p99 of messages sent while the pass ran against the baseline's p99 (same machine, same
   data, same run). The p99 before the pass and in the ``AFTER_S`` after it are reported too.

Usage: python benchmarks/s8_retention.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time

import httpx

from common import BENCH, DATA, PY, Context, Row, TruckxServer, login_all, percentile

DEVICES = 40
RATE = 25.0  # messages per second per device: 1,000 points/s in all
FIRST_DELAY_S = 10.0  # domain/retention.py: the first pass runs this long after start
AFTER_S = 15.0  # steady load measured after the pass
BASELINE_S = 25.0  # the same load with retention off
CAP_S = 240.0  # give up waiting for the pass after this long


def seed(ctx: Context, port: int, tokens_file: str, seconds: float) -> dict:
    old_us = time.time_ns() // 1000 - 40 * 86400 * 10**6
    cmd = [PY, str(BENCH / "wsflood.py"), "--port", str(port), "--tokens", tokens_file, "--duration", str(seconds),
           "--warmup", "0", "--window", "20", "--points", "50", "--base-us", str(old_us)]
    ctx.commands.append(" ".join(cmd[1:]).replace(str(BENCH) + "/", "benchmarks/"))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


async def device(url: str, token: str, index: int, stop: asyncio.Event, samples: list[tuple[float, float]]) -> None:
    """One device: a location every 1/RATE s; each ack's latency recorded as (sent at, ms)."""
    from websockets.asyncio.client import connect

    sent: dict[int, float] = {}
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        async def reader() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "ack":
                    now = time.monotonic()
                    for s in [s for s in sent if s <= msg["seq"]]:
                        t = sent.pop(s)
                        samples.append((t, (now - t) * 1000))

        task = asyncio.create_task(reader())
        seq = 0
        next_at = time.monotonic() + index / (DEVICES * RATE)  # spread the devices over one period
        try:
            while not stop.is_set():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / RATE
                seq += 1
                ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{seq % 1000:03d}{index % 1000:03d}Z"
                sent[seq] = time.monotonic()
                await ws.send(json.dumps({"type": "location", "seq": seq, "ts": ts, "lat": 48.0 + index * 0.01,
                                          "lon": 11.0, "speed_kmh": 50.0}))
            await asyncio.sleep(1.0)  # the last acks
        finally:
            task.cancel()


def removed_total(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith('truckx_retention_removed_total{kind="locations"}'):
            return float(line.split()[-1])
    return 0.0


async def measure(srv: TruckxServer, tokens: list[str], started: float, fixed_s: float | None = None) -> dict:
    """Run the load until ``fixed_s`` has passed, or until the pass has ended and ``AFTER_S`` more."""
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    ws_url = srv.url.replace("http://", "ws://") + "/api/v1/device/ws"
    tasks = [asyncio.create_task(device(ws_url, t, i, stop, samples)) for i, t in enumerate(tokens)]
    ended = None
    removed = 0.0
    if fixed_s is not None:
        await asyncio.sleep(max(0.0, started + fixed_s - time.monotonic()))
    while fixed_s is None and time.monotonic() - started < CAP_S:
        await asyncio.sleep(0.5)
        removed = await asyncio.to_thread(removed_total, srv.url)
        if removed and ended is None:
            ended = time.monotonic()
        if ended is not None and time.monotonic() - ended >= AFTER_S:
            break
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"samples": samples, "ended": ended, "removed": removed, "errors": errors}


def run(ctx: Context) -> list[Row]:
    quick = ctx.quick or "--quick" in sys.argv
    data = DATA / "s8"
    seed_s = 10.0 if quick else 30.0
    with TruckxServer(data / "server") as srv:
        creds = srv.register(DEVICES)
        tokens = login_all(srv.url, creds)
        tokens_file = str(data / "tokens.json")
        with open(tokens_file, "w") as f:
            json.dump(tokens, f)
        ctx.say(f"s8: seeding points 40 days old for {seed_s:.0f}s (retention off)")
        seeded = seed(ctx, srv.port, tokens_file, seed_s)
    backlog = sqlite3.connect(data / "server" / "locations.db").execute("SELECT count(*) FROM locations").fetchone()[0]
    ctx.commands.append(f"{DEVICES} devices x {RATE:.0f} location/s each over WebSockets (benchmarks/s8_retention.py)")

    def phase(fixed_s: float | None, **settings: object) -> dict:
        srv = TruckxServer(data / "server", fresh=False, **settings)
        srv.start()
        started = time.monotonic()
        try:
            result = asyncio.run(measure(srv, login_all(srv.url, creds), started, fixed_s))
        finally:
            srv.stop()
        result["started"] = started
        return result

    ctx.say(f"s8: {backlog:,} old points stored ({seeded['points_per_s']:.0f}/s); baseline: {DEVICES * RATE:.0f} "
            f"points/s for {BASELINE_S:.0f}s, retention off")
    baseline = phase(FIRST_DELAY_S + BASELINE_S)
    base = [ms for t, ms in baseline["samples"] if t >= baseline["started"] + FIRST_DELAY_S]
    ctx.say(f"s8: baseline ack p99 {percentile(base, 99)} ms; now with --retain-locations-days 30")
    result = phase(None, retain_locations_days=30)
    started = result["started"]
    left = sqlite3.connect(data / "server" / "locations.db").execute("SELECT count(*) FROM locations").fetchone()[0]
    samples, ended = result["samples"], result["ended"]
    pass_from = started + FIRST_DELAY_S
    before = [ms for t, ms in samples if started + 2 <= t < pass_from]
    if ended is None:
        during = [ms for t, ms in samples if t >= pass_from]
        after: list[float] = []
    else:
        during = [ms for t, ms in samples if pass_from <= t < ended]
        after = [ms for t, ms in samples if ended + 1 <= t]
    p99_during, p99_base = percentile(during, 99), percentile(base, 99)
    pass_s = (ended - pass_from) if ended else None
    ratio = (p99_during / p99_base) if p99_during and p99_base else None
    ctx.say(f"s8: pass {'%.1f s' % pass_s if pass_s else 'did not end'}, removed {result['removed']:.0f}; ack p99 "
            f"during {p99_during} ms, after {percentile(after, 99)} ms, before {percentile(before, 99)} ms")
    note = (f"pass removed {result['removed']:.0f} of {backlog:,} old points in {pass_s:.1f} s ({left:,} rows left); "
            if pass_s else f"the pass did not end within {CAP_S:.0f} s; ") + \
        (f"ack p50 during {percentile(during, 50)} ms, after {percentile(after, 50)} ms; p99 before the pass "
         f"{percentile(before, 99)} ms, in the {AFTER_S:.0f} s after it {percentile(after, 99)} ms; baseline p50 "
         f"{percentile(base, 50)} ms; {len(during)} acks during, {len(base)} in the baseline; errors "
         f"{(result['errors'] + baseline['errors'])[:2]}")
    return [Row("8 retention", "ack p99 while a retention pass runs",
                round(p99_during, 1) if p99_during else None, "ms",
                round(p99_base, 1) if p99_base else None, "ack p99 of the same load, retention off",
                "<= 2x baseline", ratio is not None and ratio <= 2 and not result["errors"] and not baseline["errors"],
                note)]


if __name__ == "__main__":
    for r in run(Context(quick="--quick" in sys.argv)):
        print(r)
