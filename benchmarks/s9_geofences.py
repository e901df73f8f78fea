"""Scenario 9, geofences: persisted location points per second with 1,000 geofences versus none.

Two servers on their own SQLite stores, the same devices' load (wsflood.py, 50 WebSockets x 20 messages
in flight, 1 point per message, as scenario 1) alternating between them, four rounds, each server going
first in two of them; the figure is the fences server's mean over the none server's (the median of the
per-round ratios is noted beside it: on a shared machine one round can be off by 15% either way). Geofence evaluation runs after the ack, off the
hot path, so the target is within 10% (>= 0.9x).

The 1,000 fences are half GeoJSON polygons (5 to 40 vertices) and half geodesic circles, scattered over
the region the flood's points lie in (lat 40.0-40.1, lon -90.0), ten of them on the points themselves,
so that the evaluator does real work: every point is tested, some devices enter fences. After each flood
of the fences server, the time until its evaluator has caught up (queue empty: /metrics
``truckx_geofence_queue_points`` and ``truckx_geofence_pending_devices`` at 0) is reported beside the
transitions stored and the points it had to read back from the store (queue full).
"""

from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import httpx

from common import DATA, Context, Row, TruckxServer, login_all, ratio_row
from s1_ingest import CONNECTIONS, cpu_note, flood, write_tokens

FENCES = 1000
ROUNDS = 4


def fences(seed: int = 9) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(FENCES):
        if i < 10:  # on the points: each connection's points sit at one latitude in 40.0-40.1, lon -90.0
            out.append({"name": f"track-{i}", "geometry": {"type": "Circle", "center": [-90.0, 40.005 + i * 0.01],
                                                           "radius_m": 400.0}})
            continue
        lon, lat = rng.uniform(-91.0, -89.0), rng.uniform(39.0, 41.0)
        if i % 2:
            out.append({"name": f"circle-{i}", "geometry": {"type": "Circle", "center": [lon, lat],
                                                            "radius_m": rng.uniform(200, 3000)}})
        else:
            n, r = rng.randint(5, 40), rng.uniform(0.005, 0.03)
            ring = [[lon + r * math.cos(2 * math.pi * k / n) * 1.3, lat + r * math.sin(2 * math.pi * k / n)]
                    for k in range(n)]
            ring.append(ring[0])
            out.append({"name": f"polygon-{i}", "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return out


def metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total


def caught_up(url: str, timeout: float = 120.0) -> tuple[float, str]:
    """Seconds until the evaluator's queue and catch-ups are empty, and the /metrics text then."""
    t0 = time.monotonic()
    while True:
        text = httpx.get(url + "/metrics", timeout=10).text
        if metric(text, "truckx_geofence_queue_points") == 0 and metric(text, "truckx_geofence_pending_devices") == 0:
            return time.monotonic() - t0, text
        if time.monotonic() - t0 > timeout:
            return float("nan"), text
        time.sleep(0.05)


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 10.0
    data = DATA / "s9"
    with TruckxServer(data / "none") as none, TruckxServer(data / "fences") as fenced:
        headers = {"Authorization": f"Bearer {fenced.admin_token()}"}
        t = time.monotonic()
        with httpx.Client(base_url=fenced.url, headers=headers, timeout=30) as http:
            for body in fences():
                http.post("/api/v1/admin/geofences", json=body).raise_for_status()
        ctx.say(f"s9: {FENCES} geofences created in {time.monotonic() - t:.1f}s")
        tokens = {}
        for name, srv in (("none", none), ("fences", fenced)):
            tokens[name] = write_tokens(data / f"tokens-{name}.json", login_all(srv.url, srv.register(CONNECTIONS)))
        results: dict[str, list[dict]] = {"none": [], "fences": []}
        lags: list[float] = []
        for round_ in range(ROUNDS):
            pair = [("none", none), ("fences", fenced)]
            for name, srv in (pair if round_ % 2 == 0 else pair[::-1]):  # each goes first in half the rounds
                ctx.say(f"s9: round {round_ + 1}, {name}: {CONNECTIONS} connections, {duration:.0f}s")
                res = flood(ctx, srv.port, tokens[name], duration, 1, server_pid=srv.pid, label=f"geofences-{name}")
                results[name].append(res)
                ctx.say(f"s9: {name} {res['points_per_s']:.0f} points/s ({cpu_note(res)})")
                if name == "fences":
                    lag, text = caught_up(fenced.url)
                    lags.append(lag)
                    ctx.say(f"s9: evaluator caught up {lag:.2f}s after the flood")
        transitions = metric(text, "truckx_geofence_transitions_total")
        deferred = metric(text, "truckx_geofence_points_deferred_total")
    base = sum(r["points_per_s"] for r in results["none"]) / len(results["none"])
    value = sum(r["points_per_s"] for r in results["fences"]) / len(results["fences"])
    rounds = ", ".join(f"{f['points_per_s']:.0f}/{n['points_per_s']:.0f}"
                       for f, n in zip(results["fences"], results["none"]))
    paired = sorted(f["points_per_s"] / n["points_per_s"] for f, n in zip(results["fences"], results["none"]))
    median = (paired[(len(paired) - 1) // 2] + paired[len(paired) // 2]) / 2
    return [
        ratio_row("9 geofences", "s9.ingest_with_fences", f"persisted points/s with {FENCES} geofences",
                  round(value), "points/s", round(base), "same load, no geofences", "higher", 0.9, "rate",
                  f"mean of {ROUNDS} alternating rounds of {duration:.0f}s each (fences/none per round: {rounds}; "
                  f"median of the per-round ratios {median:.2f}); "
                  f"fences: {cpu_note(results['fences'][-1])}; none: {cpu_note(results['none'][-1])}"),
        Row("9 geofences", "evaluator caught up after each flood", round(max(lags), 2), "s", None, "",
            "(informational)", None,
            f"per round {', '.join(f'{x:.2f}' for x in lags)} s; {transitions:.0f} transitions stored; "
            f"{deferred:.0f} points read back from the store (queue full)", key="s9.evaluation_lag", kind="time",
            status="info"),
    ]


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in run(Context()):
        print(r)
