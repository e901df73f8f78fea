"""Location write throughput through the store classes, batches of 1000 points from 100 devices:
SQLite vs MongoDB (SecantusDB started as a separate process). Not a test; run it by hand:

    .venv/bin/python benchmarks/location_stores.py
"""
import asyncio, datetime as dt, sys, tempfile, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from tests.backends import SecantusProcess, mongo_url
from truckx_server.models import UTC, LocationPoint
from truckx_server.storage.locations_sqlite import SqliteLocationStore
from truckx_server.storage.locations_mongo import MongoLocationStore, _doc

T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
def batches(n_batches, size=1000, devices=100):
    out = []; k = 0
    for _ in range(n_batches):
        b = []
        for _ in range(size):
            b.append(LocationPoint(imei="35%013d" % (k % devices), ts=T0 + dt.timedelta(seconds=k // devices), lat=52.1, lon=13.4, speed_kmh=50.0)); k += 1
        out.append(b)
    return out

async def run(name, store, n):
    await store.open()
    bs = batches(n)
    await store.write(bs[0])
    t = time.perf_counter()
    for b in bs[1:]:
        await store.write(b)
    el = time.perf_counter() - t
    t = time.perf_counter()
    for b in bs[1:4]:
        await store.write(b)  # a full resend: every point a duplicate
    dup = time.perf_counter() - t
    print(f"{name:32s} {1000*(n-1)/el:9.0f} points/s  (resend of 3 batches: {3000/dup:8.0f} points/s)")
    await store.close()

async def main():
    d = tempfile.mkdtemp()
    await run("sqlite", SqliteLocationStore(f"sqlite:///{d}/loc.db"), 30)
    srv = SecantusProcess(); srv.start()
    try:
        await run("mongo (SecantusDB py) unique idx", MongoLocationStore(mongo_url(srv.address, "b1"), timeout_s=30), 10)
        await run("mongo (SecantusDB py) no unique", MongoLocationStore(mongo_url(srv.address, "b2"), timeout_s=30, unique_index=False), 10)
    finally:
        srv.stop()
async def main2():
    srv = SecantusProcess(); srv.start()
    try:
        await run("mongo regular coll, unique", MongoLocationStore(mongo_url(srv.address, "b3"), timeout_s=30, time_series=False), 10)
        s = MongoLocationStore(mongo_url(srv.address, "b4"), timeout_s=30)
        await s.open()
        bs = batches(5)
        t = time.perf_counter()
        for b in bs: await s._insert({(d["imei"], d["ts"], d["tsu"]): d for d in map(_doc, b)})
        print("insert only", 5000/(time.perf_counter()-t))
        t = time.perf_counter()
        for b in bs:
            newest = {}
            for p in b: newest[p.imei] = p
            await s._update_latest(newest.values())
        print("latest only (100 upserts/batch)", 5000/(time.perf_counter()-t))
        await s.close()
    finally:
        srv.stop()
asyncio.run(main())
asyncio.run(main2())
