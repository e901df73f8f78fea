"""Scenario 1, ingest: persisted location points per second through the real server (SQLite store,
group commit, acks after durable) versus a bare Tornado WebSocket handler that only parses JSON;
``GET /healthz`` p99 while the server ingests flat out versus the same probe on the idle server; and,
when the server has ``--workers``, ``--workers 2`` versus ``--workers 1`` on the same stores.

The same load generator (wsflood.py, one process) drives the bare handler and the real server with the
same connections and window. Persisted = acknowledged (an ack means durable); the row count of
locations.db is checked afterwards. The CPU the client and the server used is reported beside the
figures: on 2 shared cores the client can be the limit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

from common import (BENCH, DATA, PY, Context, HttpProbe, Row, TruckxServer, bare_server, login_all, mariadb_fresh,
                    percentile, ratio_row, redis_up, server_supports, tree_cpu, unsupported)

CONNECTIONS = 50
WINDOW = 20
WARMUP = 2.0


def flood(ctx: Context, port: int, tokens_file: str, duration: float, points: int, base_us: int = 0,
          server_pid: int | None = None, label: str = "") -> dict:
    """Run wsflood.py; adds the server's CPU use over the run (``server_cores``) when ``server_pid``."""
    cmd = [PY, str(BENCH / "wsflood.py"), "--port", str(port), "--tokens", tokens_file, "--duration", str(duration),
           "--warmup", str(WARMUP), "--window", str(WINDOW), "--points", str(points)]
    if base_us:
        cmd += ["--base-us", str(base_us)]
    ctx.commands.append(" ".join(cmd[1:]).replace(str(BENCH) + "/", "benchmarks/"))
    cpu0, t0 = (tree_cpu(server_pid) if server_pid else 0.0), time.monotonic()
    with ctx.profiler(server_pid, label) if label else contextlib.nullcontext():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if server_pid:
        res["server_cores"] = round((tree_cpu(server_pid) - cpu0) / (time.monotonic() - t0), 2)
    return res


def cpu_note(res: dict, cores: int = 2) -> str:
    s = f"client {res['client_cores']:.2f} cores ({res['client_cores'] / cores:.0%} of the machine)"
    if "server_cores" in res:
        s += f", server {res['server_cores']:.2f} cores"
    return s


def cpu_row(scenario: str, key: str, metric: str, real: dict, real_rate: float, bare: dict, bare_rate: float,
            baseline_name: str) -> Row:
    """Server CPU time per unit of work, real vs bare (informational). On a machine shared with other
    work the rates move with the CPU time the server happens to get; the CPU time each unit costs moves
    much less, so this ratio is the steadier figure when the load average is above the core count."""
    def us(res: dict, rate: float) -> float | None:
        return round(res["server_cores"] / rate * 1e6, 1) if rate and res.get("server_cores") else None
    value, base = us(real, real_rate), us(bare, bare_rate)
    return Row(scenario, metric, value, "µs", base, baseline_name, "(informational)", None,
               f"server cores: real {real.get('server_cores')}, bare {bare.get('server_cores')}", key=key,
               better="lower", kind="rate", status="info")


def write_tokens(path: Path, tokens: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tokens))
    return str(path)


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 10.0
    data = DATA / "s1"
    with TruckxServer(data / "server") as srv:
        creds = srv.register(CONNECTIONS)
        tokens_file = write_tokens(data / "tokens.json", login_all(srv.url, creds))
        with bare_server("bare_ws.py") as (bare_port, bare_proc):
            ctx.say(f"s1: bare WebSocket baseline, {CONNECTIONS} connections x {WINDOW} in flight, {duration:.0f}s")
            bare = flood(ctx, bare_port, tokens_file, duration, 1, server_pid=bare_proc.pid)
        ctx.say(f"s1: bare {bare['messages_per_s']:.0f} msg/s ({cpu_note(bare)}); idle /healthz probe")
        idle_probe = HttpProbe(srv.port, interval=0.01, count=100 if ctx.quick else 300)
        idle = idle_probe.measure()
        ctx.say("s1: now the real server, with the /healthz probe alongside")
        probe = HttpProbe(srv.port, interval=0.01, start_after=WARMUP)
        probe.start()
        try:
            real = flood(ctx, srv.port, tokens_file, duration, 1, server_pid=srv.pid, label="ingest")
        finally:
            loaded = probe.stop()
        ctx.say(f"s1: real {real['points_per_s']:.0f} points/s (p99 ack {real['ack_p99_ms']} ms; {cpu_note(real)}); "
                "batched catch-up")
        batched = flood(ctx, srv.port, tokens_file, duration, 50, base_us=time.time_ns() // 1000 - 3 * 3600 * 10**6,
                        server_pid=srv.pid)
        time.sleep(0.5)
    rows = sqlite3.connect(data / "server" / "locations.db").execute("SELECT count(*) FROM locations").fetchone()[0]
    acked_total_min = real["acked_points"] + batched["acked_points"]
    errors = bare["errors"] + real["errors"] + batched["errors"]
    h_idle50, h_idle99 = percentile(idle, 50), percentile(idle, 99)
    h_load50, h_load99 = percentile(loaded, 50), percentile(loaded, 99)
    ctx.say(f"s1: /healthz p99 idle {h_idle99:.2f} ms, under ingest {h_load99 or 0:.2f} ms")
    out = [
        ratio_row("1 ingest", "s1.ingest", "persisted points/s, 1 point per message", round(real["points_per_s"]),
                  "points/s", round(bare["messages_per_s"]), "bare Tornado WS JSON-parse sink, msg/s", "higher", 0.8,
                  "rate",
                  f"ack p50/p99 {real['ack_p50_ms']}/{real['ack_p99_ms']} ms (bare {bare['ack_p50_ms']}/"
                  f"{bare['ack_p99_ms']}); {CONNECTIONS} connections, {WINDOW} messages in flight each; "
                  f"real: {cpu_note(real)}; bare: {cpu_note(bare)}"),
        Row("1 ingest", "persisted points/s, 50 points per `locations` message (catch-up)",
            round(batched["points_per_s"]), "points/s", None, "", "(informational)", None,
            f"ack p50/p99 {batched['ack_p50_ms']}/{batched['ack_p99_ms']} ms; {cpu_note(batched)}",
            key="s1.ingest_batched", kind="rate", status="info"),
        Row("1 ingest", "rows in locations.db >= acked points", rows, "rows", None, "", "nothing acked is lost",
            rows >= acked_total_min and not errors, f"acked in measured windows {acked_total_min}; errors {errors[:2]}",
            key="s1.no_loss"),
        cpu_row("1 ingest", "s1.cpu_per_point", "server CPU per persisted point, 1 point per message", real,
                real["points_per_s"], bare, bare["messages_per_s"], "bare sink, CPU per message"),
        ratio_row("1 ingest", "s1.healthz_under_ingest", "GET /healthz p99 while ingest runs flat out",
                  h_load99 and round(h_load99, 2), "ms", round(h_idle99, 2), "same probe, idle server", "lower", 3.0,
                  "tail",
                  f"p50 {h_load50 or 0:.2f} ms (idle {h_idle50:.2f}); {len(loaded)} requests during the 1-point flood "
                  f"(one every 10 ms, one keep-alive connection), {len(idle)} idle; probe errors {probe.errors}"),
    ]
    out.append(workers_row(ctx, duration))
    return out


def workers_row(ctx: Context, duration: float) -> Row:
    """``--workers 2`` vs ``--workers 1``, same stores, same client; detected from ``--help``."""
    key, metric = "s1.workers", "persisted points/s, `--workers 2` / `--workers 1`"
    if not server_supports("--workers"):
        return unsupported("1 ingest", key, metric, "truckx-server --help has no --workers", ">= 1.4x")
    bus: dict[str, str] = {}
    if server_supports("--bus-url"):
        if not redis_up():
            return Row("1 ingest", metric, "not measured", "", None, "", ">= 1.4x", None,
                       "Redis at 127.0.0.1:6379 does not answer (--workers 2 needs --bus-url)", key, status="failed")
        bus = {"bus_url": "redis://127.0.0.1:6379/14"}
    data = DATA / "s1w"
    results: dict[int, dict] = {}
    # the embedded stores first; if the server refuses them with several processes, MariaDB for SQL
    choices = [("embedded SQLite stores", lambda: {}),
               ("MariaDB (truckx_bench_workers) + SQLite locations",
                lambda: {"sql_url": mariadb_fresh("truckx_bench_workers")})]
    refused: list[str] = []
    stores_label = ""
    for label, make in choices:
        try:
            stores = make()
            for n in (2, 1):
                extra = dict(bus) if n > 1 else {}
                if n == 1 and stores.get("sql_url"):
                    stores = {"sql_url": mariadb_fresh("truckx_bench_workers")}
                with TruckxServer(data / f"w{n}", workers=n, **stores, **extra) as srv:
                    creds = srv.register(CONNECTIONS)
                    tokens_file = write_tokens(data / f"tokens-{n}.json", login_all(srv.url, creds))
                    ctx.say(f"s1: --workers {n} on {label}")
                    results[n] = flood(ctx, srv.port, tokens_file, duration, 1, server_pid=srv.pid, label=f"workers{n}")
            stores_label = label
            break
        except RuntimeError as exc:
            refused.append(f"{label}: {str(exc)[:200]}")
            results.clear()
    if not results:
        return Row("1 ingest", metric, "not measured", "", None, "", ">= 1.4x", False,
                   "server did not start with --workers 2: " + "; ".join(refused), key, status="failed")
    w1, w2 = results[1], results[2]
    ctx.say(f"s1: workers 2 {w2['points_per_s']:.0f} points/s vs workers 1 {w1['points_per_s']:.0f}")
    return ratio_row("1 ingest", key, metric, round(w2["points_per_s"]), "points/s", round(w1["points_per_s"]),
                     "same client, `--workers 1`", "higher", 1.4, "rate",
                     f"{stores_label}{', --bus-url (workers 2 only)' if bus else ''}; workers 2: {cpu_note(w2)}; "
                     f"workers 1: {cpu_note(w1)}; ack p99 {w2['ack_p99_ms']} / {w1['ack_p99_ms']} ms")


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in run(Context()):
        print(r)
