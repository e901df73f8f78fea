"""Scenario 6, queries at scale: the admin alarm list with filters over 1,000,000 alarms, and one
device-day track (a page of 1000 points) out of 10,000,000 location points, through the real server's
REST API, each against the same page read straight from the database in the same run: the same SQL
for each filter (the keyset page, plus one row to know whether more follow, then the files of the
page's alarms, as the server reads them), timed the same way (sequential requests after warm-ups).
Before timing, each direct query is checked to return exactly the page the API returns.

Backends:
- SQLite (the embedded default): alarms and track.
- MariaDB (``truckx_bench`` on 127.0.0.1:3306, root): the same 1,000,000 alarms, bulk-loaded with
  ``LOAD DATA LOCAL INFILE``; the server runs with ``--sql-url mysql://...``. The track is not on
  MariaDB: the server keeps locations in SQLite or MongoDB only.
- MongoDB (SecantusDB, ``secantusd-py``, a Python server): the track page only, at a reduced size
  (SecantusDB takes ~5,000 inserts/s), reported without a target.

The data is generated once by direct bulk loads into stores the server itself created (its migrations;
its location store's schema on first start), cached under benchmarks/.data/s6* (gitignored; MariaDB's
in the ``truckx_bench`` database, checked by row count), and reused by later runs; the generation time
is reported separately."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from common import (DATA, MARIADB, PY, ROOT, Context, Row, TruckxServer, free_port, make_imei, mariadb_connect,
                    mariadb_fresh, percentile, ratio_row)

#: bump when the generated data or its layout changes (cached data of another format is regenerated)
FORMAT = 2
ALARMS = 1_000_000
DEVICES = 1_000
POINTS_PER_DEVICE = 10_000  # 10 s apart: ~28 hours per device, 10,000,000 in all
MONGO_DEVICES = 30  # 300,000 points: SecantusDB loads ~5,000/s
TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
REPEATS = 200
PAGE = 100
TRACK_PAGE = 1000
MARIADB_DB = "truckx_bench"


def db_time(t: dt.datetime) -> str:
    """How both SQL backends store a UTC time (SQLAlchemy's SQLite text; MariaDB DATETIME(6) literal)."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def imeis() -> list[str]:
    return [make_imei(f"35{i:012d}") for i in range(1, DEVICES + 1)]


def alarm_rows(n: int) -> Iterator[tuple]:
    """The same ``n`` alarms on every backend: (id, imei, type, ts, lat, lon, speed_kmh, details, status,
    received_at), times as text."""
    rng = random.Random(6)
    ids = imeis()
    span = POINTS_PER_DEVICE * 10
    for _ in range(n):
        aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        imei = ids[rng.randrange(DEVICES)]
        ts = START + dt.timedelta(seconds=rng.uniform(0, span))
        st = rng.random()
        status = "active" if st < 0.8 else "acknowledged" if st < 0.95 else "cleared"
        yield (aid, imei, TYPES[rng.randrange(6)], db_time(ts), 25 + rng.random() * 24, -124 + rng.random() * 57,
               round(rng.uniform(0, 120), 1), '{"g_force": 1.2}', status, db_time(ts + dt.timedelta(seconds=2)))


ALARM_COLS = "id, imei, type, ts, lat, lon, speed_kmh, details, status, received_at"


def create_stores(ctx: Context, data_dir: Path, **settings: Any) -> None:
    """Let the server create its stores: start it once on ``data_dir`` (it migrates the SQL store and
    opens the location store, which creates its schema), then stop it."""
    with TruckxServer(data_dir, fresh=False, **settings):
        pass
    ctx.say(f"s6: stores created by the server in {data_dir.relative_to(ROOT)}")


# -- SQLite ----------------------------------------------------------------------------------------

def generate_sqlite(ctx: Context, data_dir: Path, scale: float) -> dict:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    create_stores(ctx, data_dir)
    ids = imeis()
    n_alarms = int(ALARMS * scale)
    n_points = int(POINTS_PER_DEVICE * scale)
    t0 = time.monotonic()
    db = sqlite3.connect(data_dir / "truckx.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    # bulk load without the secondary indexes, then build them once (the migration's own definitions)
    where = "type='index' AND sql IS NOT NULL AND tbl_name IN ('alarms', 'alarm_files')"
    indexes = [r[0] for r in db.execute(f"SELECT sql FROM sqlite_master WHERE {where}")]
    for (name,) in db.execute(f"SELECT name FROM sqlite_master WHERE {where}").fetchall():
        db.execute(f'DROP INDEX "{name}"')
    now = db_time(START)
    db.executemany("INSERT INTO devices (imei, name, secret_hash, enabled, created_at) VALUES (?,?,?,1,?)",
                   [(imei, f"truck {i}", "0" * 64, now) for i, imei in enumerate(ids)])
    batch: list[tuple] = []

    def flush() -> None:
        db.executemany(f"INSERT INTO alarms ({ALARM_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
        db.executemany("INSERT INTO alarm_files (alarm_id, name, imei) VALUES (?,?,?)",
                       [(a[0], f"{a[1]}-{a[0][:8]}-front.mp4", a[1]) for a in batch])
        db.commit()
        batch.clear()
    for row in alarm_rows(n_alarms):
        batch.append(row)
        if len(batch) == 100_000:
            flush()
    flush()
    for sql in indexes:
        db.execute(sql)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    t_alarms = time.monotonic() - t0
    ctx.say(f"s6: {n_alarms:,} alarms in {t_alarms:.1f}s (SQLite)")

    t0 = time.monotonic()
    ldb = sqlite3.connect(data_dir / "locations.db")
    ldb.execute("PRAGMA journal_mode=WAL")
    ldb.execute("PRAGMA synchronous=OFF")
    ldb.execute("PRAGMA cache_size=-1000000")
    start_us = int(START.timestamp()) * 1_000_000
    for d, imei in enumerate(ids):
        lat, lon = 30 + d % 15, -110 + d % 30
        rows = [(imei, start_us + k * 10_000_000, lat + k * 1e-4, lon + k * 1e-4, 80.0, 90.0, 200.0, 5.0)
                for k in range(n_points)]
        ldb.executemany("INSERT INTO locations (imei, ts, lat, lon, speed_kmh, heading, alt_m, accuracy_m) "
                        "VALUES (?,?,?,?,?,?,?,?)", rows)
        if d % 50 == 49:
            ldb.commit()
    ldb.execute("INSERT INTO latest SELECT l.* FROM locations l JOIN (SELECT imei, max(ts) ts FROM locations "
                "GROUP BY imei) m USING (imei, ts)")
    ldb.commit()
    ldb.close()
    t_points = time.monotonic() - t0
    ctx.say(f"s6: {n_points * DEVICES:,} points in {t_points:.1f}s (SQLite)")
    return {"alarms": n_alarms, "points": n_points * DEVICES, "alarms_s": round(t_alarms, 1),
            "points_s": round(t_points, 1)}


# -- MariaDB ---------------------------------------------------------------------------------------

def mariadb_count() -> int | None:
    try:
        conn = mariadb_connect(MARIADB_DB)
    except Exception:  # noqa: BLE001 - no such database (or no server): not cached
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM alarms")
            return cur.fetchone()[0]
    except Exception:  # noqa: BLE001
        return None
    finally:
        conn.close()


def generate_mariadb(ctx: Context, data_dir: Path, scale: float) -> dict:
    """A fresh ``truckx_bench``, migrated by ``truckx-server migrate``, bulk-loaded from TSV files with
    ``LOAD DATA LOCAL INFILE`` (secondary indexes dropped during the load and rebuilt after)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    url = mariadb_fresh(MARIADB_DB)
    t0 = time.monotonic()
    subprocess.run([PY, "-m", "truckx_server", "--data-dir", str(data_dir / "server"), "--sql-url", url, "migrate"],
                   check=True, cwd=ROOT, capture_output=True)
    n_alarms = int(ALARMS * scale)
    ids = imeis()
    tsv = data_dir / "tsv"
    tsv.mkdir()
    now = db_time(START)
    with open(tsv / "devices.tsv", "w") as f:
        for i, imei in enumerate(ids):
            f.write(f"{imei}\ttruck {i}\t{'0' * 64}\t1\t{now}\n")
    rows = sorted(alarm_rows(n_alarms))  # primary-key order: InnoDB appends instead of splitting pages
    with open(tsv / "alarms.tsv", "w") as f:
        for a in rows:
            f.write("\t".join(map(str, a)) + "\n")
    with open(tsv / "alarm_files.tsv", "w") as f:
        for a in rows:
            f.write(f"{a[0]}\t{a[1]}-{a[0][:8]}-front.mp4\t{a[1]}\n")
    del rows
    conn = mariadb_connect(MARIADB_DB, local_infile=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET foreign_key_checks = 0")
            cur.execute("SET unique_checks = 0")
            # the migration's secondary indexes, to rebuild after the load
            cur.execute("SELECT table_name, index_name, non_unique, GROUP_CONCAT(column_name ORDER BY seq_in_index) "
                        "FROM information_schema.statistics WHERE table_schema = %s "
                        "AND table_name IN ('alarms', 'alarm_files') AND index_name <> 'PRIMARY' "
                        "GROUP BY table_name, index_name, non_unique", (MARIADB_DB,))
            indexes = cur.fetchall()
            fk_backed = set()
            cur.execute("SELECT table_name, constraint_name FROM information_schema.referential_constraints "
                        "WHERE constraint_schema = %s", (MARIADB_DB,))
            for table, name in cur.fetchall():
                fk_backed.add((table, name))
            dropped = [ix for ix in indexes if (ix[0], ix[1]) not in fk_backed]
            for table, name, _, _ in dropped:
                cur.execute(f"ALTER TABLE `{table}` DROP INDEX `{name}`")
            cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE devices (imei, name, secret_hash, enabled, created_at)",
                        (str(tsv / "devices.tsv"),))
            cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE alarms ({ALARM_COLS})", (str(tsv / "alarms.tsv"),))
            cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE alarm_files (alarm_id, name, imei)",
                        (str(tsv / "alarm_files.tsv"),))
            for table, name, non_unique, cols in dropped:
                kind = "INDEX" if non_unique else "UNIQUE INDEX"
                cols_sql = ", ".join(f"`{c}`" for c in cols.split(","))
                cur.execute(f"ALTER TABLE `{table}` ADD {kind} `{name}` ({cols_sql})")
            cur.execute("ANALYZE TABLE alarms, alarm_files, devices")
            cur.fetchall()
            cur.execute("SET foreign_key_checks = 1")
            cur.execute("SET unique_checks = 1")
    finally:
        conn.close()
    shutil.rmtree(tsv)
    t_alarms = time.monotonic() - t0
    ctx.say(f"s6: {n_alarms:,} alarms in {t_alarms:.1f}s (MariaDB, LOAD DATA LOCAL INFILE)")
    return {"alarms": n_alarms, "alarms_s": round(t_alarms, 1), "url": url}


# -- MongoDB (SecantusDB) --------------------------------------------------------------------------

class Secantus:
    """``secantusd-py`` on a free loopback port with its data under ``path`` (kept across runs)."""

    def __init__(self, path: Path) -> None:
        self.path, self.port = path, free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}?directConnection=true"

    def __enter__(self) -> "Secantus":
        exe = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which("secantusd-py")
        if exe is None:
            raise RuntimeError("secantusd-py is not installed (pip install secantusdb)")
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / "secantusd.log", "ab") as log:
            self.proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
                                          str(self.path), "--log-level", "WARNING"], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"secantusd-py exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise RuntimeError("secantusd-py did not listen within 60s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mongo_devices(quick: bool) -> list[str]:
    """The devices on MongoDB: from the track page's device (index 17) on."""
    return imeis()[17:17 + (5 if quick else MONGO_DEVICES)]


def generate_mongo(ctx: Context, data_dir: Path, mongo: Secantus, quick: bool) -> dict:
    """The server creates its collection and index (first start); the points go in with insert_many in
    the documents the server's MongoDB location store reads (checked against the API's page later)."""
    from pymongo import MongoClient
    devs = mongo_devices(quick)
    # the server creates its stores on first start; the devices are registered through its API
    with TruckxServer(data_dir / "server", fresh=False, locations_url=mongo.url("truckx_bench")) as srv:
        srv.register(len(devs), imeis=devs)
    t0 = time.monotonic()
    with MongoClient(mongo.url("truckx_bench"), tz_aware=True) as client:
        coll = client["truckx_bench"]["locations"]
        for d, imei in enumerate(devs):
            lat, lon = 30 + d % 15, -110 + d % 30
            docs = [{"imei": imei, "ts": START + dt.timedelta(seconds=10 * k), "tsu": 0, "lat": lat + k * 1e-4,
                     "lon": lon + k * 1e-4, "speed_kmh": 80.0, "heading": 90.0, "alt_m": 200.0, "accuracy_m": 5.0}
                    for k in range(POINTS_PER_DEVICE)]
            for i in range(0, len(docs), 5000):
                coll.insert_many(docs[i:i + 5000], ordered=False)
    t_points = time.monotonic() - t0
    ctx.say(f"s6: {len(devs) * POINTS_PER_DEVICE:,} points in {t_points:.1f}s (SecantusDB)")
    return {"points": len(devs) * POINTS_PER_DEVICE, "points_s": round(t_points, 1)}


# -- the queries -----------------------------------------------------------------------------------

def alarm_filters() -> dict[str, dict[str, Any]]:
    ids = imeis()
    return {
        "newest, no filter": {},
        "type=CRASH": {"type": ["CRASH"]},
        "one imei": {"imei": [ids[17]]},
        "status=acknowledged + since": {"status": ["acknowledged"], "since": START + dt.timedelta(hours=20)},
        "bbox + type=OVERSPEED": {"bbox": (-100.0, 30.0, -90.0, 40.0), "type": ["OVERSPEED"]},
        "two imeis + two types + since/until": {"imei": [ids[3], ids[4]], "type": ["CRASH", "HARD_BRAKE"],
                                                "since": START, "until": START + dt.timedelta(hours=26)},
    }


def api_params(f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"limit": PAGE}
    for k, v in f.items():
        if k == "bbox":
            out[k] = ",".join(f"{x:g}" for x in v)
        elif isinstance(v, dt.datetime):
            out[k] = iso(v)
        else:
            out[k] = v
    return out


def alarm_sql(f: dict[str, Any], ph: str) -> tuple[str, list[Any]]:
    """The keyset page for filter ``f`` (newest first, one row more than the page), placeholders ``ph``."""
    cond: list[str] = []
    args: list[Any] = []
    for col in ("imei", "type", "status"):
        if f.get(col):
            cond.append(f"{col} IN ({', '.join([ph] * len(f[col]))})")
            args += f[col]
    if "since" in f:
        cond.append(f"ts >= {ph}")
        args.append(db_time(f["since"]))
    if "until" in f:
        cond.append(f"ts < {ph}")
        args.append(db_time(f["until"]))
    if "bbox" in f:
        min_lon, min_lat, max_lon, max_lat = f["bbox"]
        cond.append(f"lat BETWEEN {ph} AND {ph} AND lon BETWEEN {ph} AND {ph}")
        args += [min_lat, max_lat, min_lon, max_lon]
    where = " AND ".join(cond) or "1 = 1"
    return f"SELECT * FROM alarms WHERE {where} ORDER BY ts DESC, id DESC LIMIT {PAGE + 1}", args


def files_sql(n: int, ph: str) -> str:
    return ("SELECT f.alarm_id, f.name, COALESCE(v.complete, 0) FROM alarm_files f LEFT OUTER JOIN videos v "
            f"ON v.imei = f.imei AND v.name = f.name WHERE f.alarm_id IN ({', '.join([ph] * n)}) "
            "ORDER BY f.alarm_id, f.name")


def direct_alarm_page(execute: Callable[[str, list[Any]], list[tuple]], f: dict[str, Any], ph: str) -> list[str]:
    """One page read straight from the database the way the server reads it: the ids of the page."""
    sql, args = alarm_sql(f, ph)
    rows = execute(sql, args)
    ids = [r[0] for r in rows[:PAGE]]
    if ids:
        execute(files_sql(len(ids), ph), ids)
    return ids


async def pair_timed(http: httpx.AsyncClient, url: str, params: dict, direct: Callable[[], Any],
                     repeats: int, warmups: int = 10) -> dict[str, Any]:
    """``repeats`` (after ``warmups``) of: the API request, then the same page straight from the database,
    alternately, so that both see the same machine at the same moments. Returns both latency lists (ms)
    and the first API body and direct result (to check they are the same page)."""
    api_t: list[float] = []
    dir_t: list[float] = []
    body: dict = {}
    first: Any = None
    for i in range(repeats + warmups):
        t = time.perf_counter()
        r = await http.get(url, params=params)
        el = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        t = time.perf_counter()
        got = direct()
        el_direct = (time.perf_counter() - t) * 1000
        if i == 0:
            body, first = r.json(), got
        if i >= warmups:
            api_t.append(el)
            dir_t.append(el_direct)
    return {"api": api_t, "direct": dir_t, "body": body, "first": first}


def measure_alarms(ctx: Context, srv: TruckxServer, label: str, filters: dict[str, dict],
                   execute: Callable[[str, list[Any]], list[tuple]], ph: str, repeats: int) -> dict[str, dict]:
    token = srv.admin_token()

    async def go() -> dict[str, dict]:
        out = {}
        async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=60) as http:
            with ctx.profiler(srv.pid, f"alarms-{label}"):
                for name, f in filters.items():
                    out[name] = await pair_timed(http, "/api/v1/admin/alarms", api_params(f),
                                                 lambda f=f: direct_alarm_page(execute, f, ph), repeats)
        return out
    return asyncio.run(go())


def track_window() -> tuple[str, dt.datetime, dt.datetime]:
    since = START + dt.timedelta(hours=2)
    return imeis()[17], since, since + dt.timedelta(days=1)


def measure_track(ctx: Context, srv: TruckxServer, label: str, direct: Callable[[], list[int]],
                  repeats: int, warmups: int = 10) -> dict[str, Any]:
    """The track page through the API and ``direct()`` (the page's timestamps in microseconds) alternately;
    then the whole device-day through the API, every page."""
    token = srv.admin_token()
    imei, since, until = track_window()

    async def go() -> dict:
        async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=60) as http:
            url = f"/api/v1/admin/devices/{imei}/locations"
            params = {"since": iso(since), "until": iso(until), "limit": TRACK_PAGE}
            with ctx.profiler(srv.pid, f"track-{label}"):
                res = await pair_timed(http, url, params, direct, repeats, warmups)
            t = time.perf_counter()
            cursor, total = None, 0
            while True:
                p = dict(params, **({"cursor": cursor} if cursor else {}))
                page = (await http.get(url, params=p)).json()
                total += len(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            res.update(full_day_ms=(time.perf_counter() - t) * 1000, full_day=total)
            res["same"] = [api_ts_us(i) for i in res["body"]["items"]] == res["first"][:TRACK_PAGE]
            return res
    return asyncio.run(go())


def api_ts_us(item: dict) -> int:
    t = dt.datetime.fromisoformat(item["ts"].replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def alarm_result_rows(ctx: Context, backend: str, count: str, results: dict[str, dict]) -> list[Row]:
    rows = []
    for name, res in results.items():
        api_ids = [a["id"] for a in res["body"]["items"]]
        same = res["first"] == api_ids
        times, base = res["api"], res["direct"]
        p99, b99 = percentile(times, 99), percentile(base, 99)
        slug = name.split(",")[0].replace(" ", "_").replace("=", "_").replace("+", "").replace("/", "_")
        rows.append(ratio_row(
            "6 queries", f"s6.{backend.lower()}.alarms.{slug}", f"{backend}: alarms at {count}: {name}, p99",
            round(p99, 2), "ms", round(b99, 3), f"same page straight from {backend} (same SQL), p99", "lower", 5.0,
            "tail", f"p50 {percentile(times, 50):.2f} ms (direct {percentile(base, 50):.3f}); {len(api_ids)} items; "
            f"direct page {'identical' if same else 'DIFFERENT'}", also=same, also_text="same page"))
        if not same:
            ctx.say(f"s6 {backend} {name}: the direct query returned another page "
                    f"({len(res['first'])} vs {len(api_ids)} rows)")
    return rows


def track_result_row(backend: str, key: str, points: int, res: dict, limit: float | None, extra: str = "") -> Row:
    p99, b99 = percentile(res["api"], 99), percentile(res["direct"], 99)
    note = (f"p50 {percentile(res['api'], 50):.2f} ms (direct {percentile(res['direct'], 50):.3f}); the whole day "
            f"({res['full_day']:,} points, all pages) took {res['full_day_ms']:.0f} ms; {len(res['api'])} requests; "
            f"direct page {'identical' if res['same'] else 'DIFFERENT'}{extra}")
    metric = f"{backend}: device-day track at {points:,} points: page of {TRACK_PAGE}, p99"
    name = f"same page straight from {backend} (same query), p99"
    if limit is None:
        return Row("6 queries", metric, round(p99, 2), "ms", round(b99, 3), name, "(none: a Python server)", None,
                   note, key, "lower", "tail", "info")
    return ratio_row("6 queries", key, metric, round(p99, 2), "ms", round(b99, 3), name, "lower", limit, "tail", note,
                     also=res["same"], also_text="same page")


def run_sqlite(ctx: Context, repeats: int) -> list[Row]:
    scale = 0.1 if ctx.quick else 1.0
    base = DATA / ("s6-quick" if ctx.quick else "s6")
    data_dir = base / "server"
    info = cached(base, lambda: generate_sqlite(ctx, data_dir, scale), ctx, "SQLite")
    ctx.commands.append("GET /api/v1/admin/alarms?<filters>&limit=100 and "
                        "GET /api/v1/admin/devices/{imei}/locations?since&until&limit=1000, "
                        f"{repeats} sequential requests each after 10 warm-ups, each followed by the same page "
                        "straight from the database (same SQL)")
    adb = sqlite3.connect(data_dir / "truckx.db")
    ldb = sqlite3.connect(data_dir / "locations.db")
    imei, since, until = track_window()
    sus, uus = int(since.timestamp()) * 10**6, int(until.timestamp()) * 10**6

    def track_page() -> list[int]:
        rows = ldb.execute("SELECT * FROM locations WHERE imei = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
                           (imei, sus, uus, TRACK_PAGE + 1)).fetchall()
        return [r[1] for r in rows]
    with TruckxServer(data_dir, fresh=False) as srv:
        alarms = measure_alarms(ctx, srv, "sqlite", alarm_filters(),
                                lambda sql, args: adb.execute(sql, args).fetchall(), "?", repeats)
        track = measure_track(ctx, srv, "sqlite", track_page, repeats)
    adb.close()
    ldb.close()
    return alarm_result_rows(ctx, "SQLite", f"{info['alarms']:,}", alarms) + [
        track_result_row("SQLite", "s6.sqlite.track", info["points"], track, 3.0),
        gen_row("sqlite", "SQLite (bulk executemany)", f"{info['alarms_s']} s alarms / {info['points_s']} s points",
                info)]


def run_mariadb(ctx: Context, repeats: int) -> list[Row]:
    scale = 0.1 if ctx.quick else 1.0
    base = DATA / ("s6-mariadb-quick" if ctx.quick else "s6-mariadb")
    want = int(ALARMS * scale)
    try:
        count = mariadb_count()
    except Exception as exc:  # noqa: BLE001
        return [Row("6 queries", "MariaDB", "not measured", "", None, "", "", None,
                    f"MariaDB not reachable: {type(exc).__name__}", "s6.mariadb", status="failed")]
    marker = base / "generated.json"
    info = json.loads(marker.read_text()) if marker.exists() else None
    if info and info.get("format") == FORMAT and info.get("alarms") == want and count == want:
        info["cached"] = True
        ctx.say(f"s6: reusing MariaDB {MARIADB_DB} generated {info['generated']}")
    else:
        info = generate_mariadb(ctx, base, scale)
        info.update(format=FORMAT, generated=time.strftime("%Y-%m-%d %H:%M:%S"), cached=False)
        marker.write_text(json.dumps(info))
    url = f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{MARIADB_DB}"
    conn = mariadb_connect(MARIADB_DB)
    try:
        def execute(sql: str, args: list[Any]) -> list[tuple]:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        with TruckxServer(base / "server", sql_url=url) as srv:
            alarms = measure_alarms(ctx, srv, "mariadb", alarm_filters(), execute, "%s", repeats)
    finally:
        conn.close()
    rows = alarm_result_rows(ctx, "MariaDB", f"{info['alarms']:,}", alarms)
    rows.append(Row("6 queries", "MariaDB: device-day track page", "not applicable", "", None, "", "", None,
                    "the server keeps locations in SQLite or MongoDB only (--locations-url); on MariaDB it is the "
                    "SQLite track above", "s6.mariadb.track", status="unsupported"))
    rows.append(gen_row("mariadb", "MariaDB (LOAD DATA LOCAL INFILE, indexes rebuilt after)",
                        f"{info['alarms_s']} s alarms", info))
    return rows


def run_mongo(ctx: Context, repeats: int) -> list[Row]:
    base = DATA / ("s6-mongo-quick" if ctx.quick else "s6-mongo")
    marker = base / "generated.json"
    info = json.loads(marker.read_text()) if marker.exists() else None
    if not (info and info.get("format") == FORMAT and (base / "secantus").exists() and (base / "server").exists()):
        if base.exists():
            shutil.rmtree(base)
        info = None
    # SecantusDB reads the whole day through its index and sorts it for every page (~1 s a page here)
    repeats = 10 if ctx.quick else 20
    try:
        from pymongo import ASCENDING, MongoClient
        with Secantus(base / "secantus") as mongo:
            if info is None:
                info = generate_mongo(ctx, base, mongo, ctx.quick)
                info.update(format=FORMAT, generated=time.strftime("%Y-%m-%d %H:%M:%S"), cached=False)
                marker.write_text(json.dumps(info))
            else:
                info["cached"] = True
                ctx.say(f"s6: reusing SecantusDB data generated {info['generated']}")
            imei, since, until = track_window()
            with MongoClient(mongo.url("truckx_bench"), tz_aware=True) as client:
                coll = client["truckx_bench"]["locations"]

                def page() -> list[int]:
                    docs = coll.find({"imei": imei, "ts": {"$gte": since, "$lt": until}}, {"_id": 0}).sort(
                        [("ts", ASCENDING), ("tsu", ASCENDING)]).limit(TRACK_PAGE + 1)
                    return [int(d["ts"].timestamp()) * 10**6 + d["ts"].microsecond + d.get("tsu", 0) for d in docs]
                with TruckxServer(base / "server", fresh=False, locations_url=mongo.url("truckx_bench")) as srv:
                    track = measure_track(ctx, srv, "mongo", page, repeats, warmups=2)
    except Exception as exc:  # noqa: BLE001 - report, do not hide the other backends
        return [Row("6 queries", "MongoDB (SecantusDB): device-day track page", "not measured", "", None, "", "", None,
                    f"{type(exc).__name__}: {str(exc)[:200]}", "s6.mongo.track", status="failed")]
    return [
        track_result_row("MongoDB (SecantusDB)", "s6.mongo.track", info["points"], track, None,
                         f"; scaled down to {info['points'] // POINTS_PER_DEVICE} devices (SecantusDB loads ~5,000 "
                         "points/s)"),
        gen_row("mongo", "SecantusDB (insert_many)", f"{info['points_s']} s points", info),
    ]


def gen_row(backend: str, how: str, value: str, info: dict) -> Row:
    return Row("6 queries", f"data generation, {how}", value, "", None, "", "(reported separately)", None,
               f"cached from {info.get('generated')}" if info.get("cached") else "generated in this run",
               f"s6.{backend}.generation", status="info")


def cached(base: Path, generate: Callable[[], dict], ctx: Context, what: str) -> dict:
    marker = base / "server" / "generated.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("format") == FORMAT:
            info["cached"] = True
            ctx.say(f"s6: reusing {what} data generated {info['generated']}")
            return info
    info = generate()
    info.update(format=FORMAT, generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    marker.write_text(json.dumps(info))
    info["cached"] = False
    return info


def run(ctx: Context) -> list[Row]:
    repeats = 50 if ctx.quick else REPEATS
    only = os.environ.get("TRUCKX_BENCH_S6", "sqlite,mariadb,mongo").split(",")
    rows: list[Row] = []
    for name, fn in (("sqlite", run_sqlite), ("mariadb", run_mariadb), ("mongo", run_mongo)):
        if name in only:
            ctx.say(f"s6: {name}")
            rows += fn(ctx, repeats)
    return rows


if __name__ == "__main__":
    for r in run(Context()):
        print(r)
