"""Scenario 6, queries at scale on SQLite: the admin alarm list with filters over 1,000,000 alarms, and
one device-day track out of 10,000,000 location points, through the real server's REST API. The
baseline is the equivalent query run directly on the same SQLite file (no HTTP, no JSON).

The data is generated once by direct bulk inserts (executemany in large transactions) into a data
directory migrated by ``truckx-server migrate``, cached under benchmarks/.data/s6 (gitignored); the
generation time is reported separately."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import shutil
import sqlite3
import subprocess
import time
import uuid

import httpx

from common import DATA, PY, ROOT, Context, Row, TruckxServer, percentile
from truckx_server.storage.locations_sqlite import SCHEMA as LOCATION_SCHEMA
from truckx_server.models import make_imei

ALARMS = 1_000_000
DEVICES = 1_000
POINTS_PER_DEVICE = 10_000  # 10 s apart: ~28 hours per device, 10,000,000 in all
TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
REPEATS = 200


def sqla_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def imeis() -> list[str]:
    return [make_imei(f"35{i:012d}") for i in range(1, DEVICES + 1)]


def generate(ctx: Context, data_dir, scale: float) -> dict:  # noqa: ANN001
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    subprocess.run([PY, "-m", "truckx_server", "migrate", "--data-dir", str(data_dir)], check=True, cwd=ROOT,
                   capture_output=True)
    rng = random.Random(6)
    ids = imeis()
    n_alarms = int(ALARMS * scale)
    n_points = int(POINTS_PER_DEVICE * scale)
    t0 = time.monotonic()
    db = sqlite3.connect(data_dir / "truckx.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    # bulk load without the secondary indexes, then build them once (same definitions as the migration)
    indexes = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                                        "AND tbl_name IN ('alarms', 'alarm_files')")]
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                              "AND tbl_name IN ('alarms', 'alarm_files')").fetchall():
        db.execute(f'DROP INDEX "{name}"')
    now = sqla_time(START)
    db.executemany("INSERT INTO devices (imei, name, secret_hash, enabled, created_at) VALUES (?,?,?,1,?)",
                   [(imei, f"truck {i}", "0" * 64, now) for i, imei in enumerate(ids)])
    span = POINTS_PER_DEVICE * 10
    batch_a, batch_f = [], []
    for i in range(n_alarms):
        aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        imei = ids[rng.randrange(DEVICES)]
        ts = START + dt.timedelta(seconds=rng.uniform(0, span))
        st = rng.random()
        status = "active" if st < 0.8 else "acknowledged" if st < 0.95 else "cleared"
        batch_a.append((aid, imei, TYPES[rng.randrange(6)], sqla_time(ts), 25 + rng.random() * 24,
                        -124 + rng.random() * 57, round(rng.uniform(0, 120), 1), '{"g_force": 1.2}', status,
                        sqla_time(ts + dt.timedelta(seconds=2))))
        batch_f.append((aid, f"{imei}-{i}-front.mp4", imei))
        if len(batch_a) == 100_000:
            db.executemany("INSERT INTO alarms (id, imei, type, ts, lat, lon, speed_kmh, details, status, received_at) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?)", batch_a)
            db.executemany("INSERT INTO alarm_files (alarm_id, name, imei) VALUES (?,?,?)", batch_f)
            db.commit()
            batch_a, batch_f = [], []
    if batch_a:
        db.executemany("INSERT INTO alarms (id, imei, type, ts, lat, lon, speed_kmh, details, status, received_at) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?)", batch_a)
        db.executemany("INSERT INTO alarm_files (alarm_id, name, imei) VALUES (?,?,?)", batch_f)
    db.commit()
    for sql in indexes:
        db.execute(sql)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    t_alarms = time.monotonic() - t0
    ctx.say(f"s6: {n_alarms:,} alarms in {t_alarms:.1f}s")

    t0 = time.monotonic()
    ldb = sqlite3.connect(data_dir / "locations.db")
    ldb.execute("PRAGMA journal_mode=WAL")
    ldb.execute("PRAGMA synchronous=OFF")
    ldb.execute("PRAGMA cache_size=-1000000")
    ldb.executescript(LOCATION_SCHEMA)
    start_us = int(START.timestamp()) * 1_000_000
    for d, imei in enumerate(ids):
        lat, lon = 30 + d % 15, -110 + d % 30
        rows = [(imei, start_us + k * 10_000_000, lat + k * 1e-4, lon + k * 1e-4, 80.0, 90.0, 200.0, 5.0)
                for k in range(n_points)]
        ldb.executemany("INSERT INTO locations VALUES (?,?,?,?,?,?,?,?)", rows)
        if d % 50 == 49:
            ldb.commit()
    ldb.execute("INSERT INTO latest SELECT l.* FROM locations l JOIN (SELECT imei, max(ts) ts FROM locations "
                "GROUP BY imei) m USING (imei, ts)")
    ldb.commit()
    ldb.close()
    t_points = time.monotonic() - t0
    ctx.say(f"s6: {n_points * DEVICES:,} points in {t_points:.1f}s")
    info = {"alarms": n_alarms, "points": n_points * DEVICES, "alarms_s": round(t_alarms, 1),
            "points_s": round(t_points, 1), "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    (data_dir / "generated.json").write_text(json.dumps(info))
    return info


async def timed(http: httpx.AsyncClient, url: str, params: dict, repeats: int) -> tuple[list[float], int]:
    times = []
    items = 0
    for i in range(repeats + 10):
        t = time.perf_counter()
        r = await http.get(url, params=params)
        el = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        if i >= 10:
            times.append(el)
            items = len(r.json()["items"])
    return times, items


def direct(db: sqlite3.Connection, sql: str, args: tuple, repeats: int) -> list[float]:
    times = []
    for i in range(repeats + 10):
        t = time.perf_counter()
        db.execute(sql, args).fetchall()
        if i >= 10:
            times.append((time.perf_counter() - t) * 1000)
    return times


def run(ctx: Context) -> list[Row]:
    scale = 0.1 if ctx.quick else 1.0
    data_dir = DATA / ("s6-quick" if ctx.quick else "s6") / "server"
    marker = data_dir / "generated.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        info["cached"] = True
        ctx.say(f"s6: reusing data generated {info['generated']}")
    else:
        info = generate(ctx, data_dir, scale)
        info["cached"] = False
    ids = imeis()
    imei = ids[17]
    day_since = START + dt.timedelta(hours=2)
    day_until = day_since + dt.timedelta(days=1)
    since_7 = START + dt.timedelta(hours=20)

    def iso(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    alarm_queries = {
        "newest, no filter": {},
        "type=CRASH": {"type": "CRASH"},
        "one imei": {"imei": imei},
        "status=acknowledged + since": {"status": "acknowledged", "since": iso(since_7)},
        "bbox + type=OVERSPEED": {"bbox": "-100,30,-90,40", "type": "OVERSPEED"},
        "two imeis + two types + since/until": {"imei": [ids[3], ids[4]], "type": ["CRASH", "HARD_BRAKE"],
                                                "since": iso(START), "until": iso(day_until)},
    }
    rows: list[Row] = []
    repeats = 50 if ctx.quick else REPEATS
    with TruckxServer(data_dir, fresh=False) as srv:
        token = srv.admin_token()

        async def go() -> dict:
            out = {}
            async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=60) as http:
                for name, params in alarm_queries.items():
                    out[name] = await timed(http, "/api/v1/admin/alarms", {**params, "limit": 100}, repeats)
                out["track"] = await timed(http, f"/api/v1/admin/devices/{imei}/locations",
                                           {"since": iso(day_since), "until": iso(day_until), "limit": 1000}, repeats)
                # the whole device-day, every page
                t = time.perf_counter()
                cursor, total = None, 0
                while True:
                    params = {"since": iso(day_since), "until": iso(day_until), "limit": 1000}
                    if cursor:
                        params["cursor"] = cursor
                    body = (await http.get(f"/api/v1/admin/devices/{imei}/locations", params=params)).json()
                    total += len(body["items"])
                    cursor = body.get("next_cursor")
                    if not cursor:
                        break
                out["full_day"] = ((time.perf_counter() - t) * 1000, total)
            return out

        ctx.commands.append("GET /api/v1/admin/alarms?<filters>&limit=100 and "
                            "GET /api/v1/admin/devices/{imei}/locations?since&until&limit=1000, "
                            f"{repeats} sequential requests each after 10 warm-ups")
        res = asyncio.run(go())
    adb = sqlite3.connect(data_dir / "truckx.db")
    base_alarm = direct(adb, "SELECT * FROM alarms WHERE type = ? ORDER BY ts DESC, id DESC LIMIT 100", ("CRASH",), repeats)
    ldb = sqlite3.connect(data_dir / "locations.db")
    sus = int(day_since.timestamp()) * 10**6
    base_track = direct(ldb, "SELECT * FROM locations WHERE imei = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT 1000",
                        (imei, sus, sus + 86400 * 10**6), repeats)
    b_alarm99, b_track99 = percentile(base_alarm, 99), percentile(base_track, 99)
    for name, (times, items) in res.items():
        if name in ("track", "full_day"):
            continue
        p99 = percentile(times, 99)
        rows.append(Row("6 queries", f"alarms at {info['alarms']:,}: {name}, p99", round(p99, 1), "ms",
                        round(b_alarm99, 2), "direct SQLite type=CRASH page p99", "<= 20 ms", p99 <= 20,
                        f"p50 {percentile(times, 50):.1f} ms, {items} items per page"))
    times, items = res["track"]
    p99 = percentile(times, 99)
    rows.append(Row("6 queries", f"device-day track at {info['points']:,} points: page of 1000, p99", round(p99, 1),
                    "ms", round(b_track99, 2), "direct SQLite same page p99", "<= 50 ms", p99 <= 50,
                    f"p50 {percentile(times, 50):.1f} ms; the whole day ({res['full_day'][1]:,} points, all pages) "
                    f"took {res['full_day'][0]:.0f} ms"))
    rows.append(Row("6 queries", "data generation (bulk executemany, SQLite)",
                    f"{info['alarms_s']} s alarms / {info['points_s']} s points", "", None, "", "(reported separately)",
                    None, "cached from an earlier run" if info["cached"] else "generated in this run"))
    rows.append(Row("6 queries", "MariaDB", "not measured", "", None, "", "(where available)", None,
                    "scenario runs on the embedded SQLite store only; see RESULTS.md notes"))
    return rows


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
