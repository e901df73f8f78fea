"""Scenario 1, ingest: persisted location points per second through the real server (SQLite store,
group commit, acks after durable) versus a bare Tornado WebSocket handler that only parses JSON.

The same load generator (wsflood.py, one process) drives both with the same connections and window.
Persisted = acknowledged (an ack means durable); the row count of locations.db is checked afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

from common import DATA, PY, BENCH, Context, Row, TruckxServer, bare_server, login_all

CONNECTIONS = 50
WINDOW = 20


def flood(ctx: Context, port: int, tokens_file: str, duration: float, points: int, base_us: int = 0) -> dict:
    cmd = [PY, str(BENCH / "wsflood.py"), "--port", str(port), "--tokens", tokens_file, "--duration", str(duration),
           "--warmup", "2", "--window", str(WINDOW), "--points", str(points)]
    if base_us:
        cmd += ["--base-us", str(base_us)]
    ctx.commands.append(" ".join(cmd[1:]).replace(str(BENCH) + "/", "benchmarks/"))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 10.0
    data = DATA / "s1"
    with TruckxServer(data / "server") as srv:
        creds = srv.register(CONNECTIONS)
        tokens = login_all(srv.url, creds)
        tokens_file = str(data / "tokens.json")
        with open(tokens_file, "w") as f:
            json.dump(tokens, f)
        with bare_server("bare_ws.py") as (bare_port, _):
            ctx.say(f"s1: bare WebSocket baseline, {CONNECTIONS} connections x {WINDOW} in flight, {duration:.0f}s")
            bare = flood(ctx, bare_port, tokens_file, duration, 1)
        ctx.say(f"s1: bare {bare['messages_per_s']:.0f} msg/s; now the real server")
        real = flood(ctx, srv.port, tokens_file, duration, 1)
        ctx.say(f"s1: real {real['points_per_s']:.0f} points/s (p99 ack {real['ack_p99_ms']} ms); batched catch-up")
        batched = flood(ctx, srv.port, tokens_file, duration, 50, base_us=time.time_ns() // 1000 - 3 * 3600 * 10**6)
        time.sleep(0.5)
    rows = sqlite3.connect(data / "server" / "locations.db").execute("SELECT count(*) FROM locations").fetchone()[0]
    acked_total_min = real["acked_points"] + batched["acked_points"]
    errors = bare["errors"] + real["errors"] + batched["errors"]
    ratio = real["points_per_s"] / bare["messages_per_s"] if bare["messages_per_s"] else 0
    return [
        Row("1 ingest", "persisted points/s, 1 point per message", round(real["points_per_s"]), "points/s",
            round(bare["messages_per_s"]), "bare WS JSON-parse handler, msg/s", ">= 0.5x and >= 10,000/s",
            ratio >= 0.5 and real["points_per_s"] >= 10_000,
            f"ack p50/p99 {real['ack_p50_ms']}/{real['ack_p99_ms']} ms (bare {bare['ack_p50_ms']}/{bare['ack_p99_ms']}); "
            f"{CONNECTIONS} connections, {WINDOW} messages in flight each"),
        Row("1 ingest", "persisted points/s, 50 points per `locations` message (catch-up)",
            round(batched["points_per_s"]), "points/s", None, "", "(informational)", None,
            f"ack p50/p99 {batched['ack_p50_ms']}/{batched['ack_p99_ms']} ms"),
        Row("1 ingest", "rows in locations.db >= acked points", rows, "rows", None, "", "nothing acked is lost",
            rows >= acked_total_min and not errors, f"acked in measured windows {acked_total_min}; errors {errors[:2]}"),
    ]


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
