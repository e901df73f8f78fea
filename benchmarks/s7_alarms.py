"""Scenario 7, alarms: alarms accepted per second with 20 devices posting at once (each one alarm at a
time, back to back, with its own UUID and one file name) through the real server (SQLite store, alarm
and file list in one transaction), versus a bare Tornado JSON POST handler (bare_ws.py: parses the JSON,
answers 201), same client (alarmflood.py), same run.

Then the properties the target keeps: every accepted alarm is stored exactly once with its file
(row counts in truckx.db after the run equal the 201s the client saw), and resending an accepted alarm
with the same ``id`` answers 200 with the stored alarm and stores nothing new (one per device)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import time

import httpx

from common import (BENCH, DATA, PY, BareServer, Context, Row, TruckxServer, login_all, ratio_row, tree_cpu)
from s1_ingest import cpu_row

DEVICES = 20


def flood(ctx: Context, port: int, tokens_file: str, duration: float, server_pid: int | None = None,
          profile: str = "") -> dict:
    cmd = [PY, str(BENCH / "alarmflood.py"), "--port", str(port), "--tokens", tokens_file, "--duration", str(duration),
           "--warmup", "2"]
    ctx.commands.append(" ".join(cmd[1:]).replace(str(BENCH) + "/", "benchmarks/"))
    cpu0, t0 = (tree_cpu(server_pid) if server_pid else 0.0), time.monotonic()
    with ctx.profiler(server_pid, profile) if profile else contextlib.nullcontext():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if server_pid:
        res["server_cores"] = round((tree_cpu(server_pid) - cpu0) / (time.monotonic() - t0), 2)
    return res


def run(ctx: Context) -> list[Row]:
    duration = 5.0 if ctx.quick else 10.0
    data = DATA / "s7"
    data.mkdir(parents=True, exist_ok=True)
    bare_tokens = data / "bare-tokens.json"
    bare_tokens.write_text(json.dumps(["bare"] * DEVICES))
    with BareServer("bare_ws.py") as bare:
        ctx.say(f"s7: bare JSON POST handler, {DEVICES} devices posting at once, {duration:.0f}s")
        b = flood(ctx, bare.port, str(bare_tokens), duration, bare.pid)
    ctx.say(f"s7: bare {b['accepted_per_s']:.0f} alarms/s; now the real server")
    with TruckxServer(data / "server") as srv:
        creds = srv.register(DEVICES)
        tokens = login_all(srv.url, creds)
        tokens_file = data / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        r = flood(ctx, srv.port, str(tokens_file), duration, srv.pid, profile="alarms")
        ctx.say(f"s7: real {r['accepted_per_s']:.0f} alarms/s (p99 {r['p99_ms']} ms); resending one per device")
        resent = {}
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for idx, body in r["first"].items():
                resp = http.post("/api/v1/device/alarms", json=body,
                                 headers={"Authorization": f"Bearer {tokens[int(idx)]}"})
                resent[idx] = (resp.status_code, resp.json().get("id") == body["id"])
    db = sqlite3.connect(data / "server" / "truckx.db")
    n_alarms = db.execute("SELECT count(*) FROM alarms").fetchone()[0]
    n_files = db.execute("SELECT count(*) FROM alarm_files").fetchone()[0]
    db.close()
    created = r["all_statuses"].get("201", 0)
    others = {k: v for k, v in r["all_statuses"].items() if k != "201"}
    replays_ok = sum(1 for status, same in resent.values() if status == 200 and same)
    atomic = n_alarms == created and n_files == created and not others and not r["errors"]
    idempotent = replays_ok == len(resent) == DEVICES
    return [
        ratio_row("7 alarms", "s7.alarms", f"alarms accepted/s, {DEVICES} devices posting at once",
                  round(r["accepted_per_s"], 1), "alarms/s", round(b["accepted_per_s"], 1),
                  "bare Tornado JSON POST handler (parse, 201)", "higher", 0.5, "rate",
                  f"p50/p99 {r['p50_ms']}/{r['p99_ms']} ms (bare {b['p50_ms']}/{b['p99_ms']}); client "
                  f"{r['client_cores']:.2f} cores, server {r.get('server_cores', 0):.2f} cores (bare: client "
                  f"{b['client_cores']:.2f}, server {b.get('server_cores', 0):.2f})",
                  also=atomic and idempotent, also_text="atomic and idempotent"),
        cpu_row("7 alarms", "s7.cpu_per_alarm", "server CPU per accepted alarm", r, r["accepted_per_s"], b,
                b["accepted_per_s"], "bare JSON POST handler, CPU per request"),
        Row("7 alarms", "every accepted alarm stored once with its file; a resend with the same id is a no-op",
            f"{n_alarms} / {n_files}", "alarms / files", None, "", "= accepted; resends 200", atomic and idempotent,
            f"{created} accepted (201) in the whole run, other statuses {others or 'none'}, client errors "
            f"{r['errors'][:2] or 'none'}; resends answered 200 with the same id: {replays_ok}/{len(resent)}",
            key="s7.atomic"),
    ]


if __name__ == "__main__":
    for row in run(Context()):
        print(row)
