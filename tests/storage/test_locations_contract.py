"""LocationStore contract: the same behaviour from every backend (SQLite, MongoDB)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.support import new_imei
from truckx_server.models import UTC, LocationPoint
from truckx_server.storage.base import LocationStore

T0 = dt.datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)


def pt(imei: str, seconds: float, lat: float = 52.123456789, lon: float = 13.987654321, **extra: float) -> LocationPoint:
    return LocationPoint(imei=imei, ts=T0 + dt.timedelta(seconds=seconds), lat=lat, lon=lon, **extra)


async def test_write_then_track_round_trips_every_field(location_store: LocationStore) -> None:
    imei = new_imei()
    points = [pt(imei, 0, speed_kmh=88.5, heading=271.25, alt_m=-3.5, accuracy_m=4.0),
              pt(imei, 0.000001),  # one microsecond later: a different point
              pt(imei, 1.5, lat=-33.9, lon=151.2)]
    await location_store.write(list(reversed(points)))
    got = await location_store.track(imei, None, None, 100)
    assert got == points
    assert all(p.ts.tzinfo is not None and p.ts.utcoffset() == dt.timedelta(0) for p in got)


async def test_a_resent_batch_is_stored_once(location_store: LocationStore) -> None:
    imei = new_imei()
    batch = [pt(imei, i) for i in range(50)]
    await location_store.write(batch)
    await location_store.write(batch)
    await location_store.write(batch[10:20] + [pt(imei, 50)] + batch[10:20])  # duplicates inside a batch too
    got = await location_store.track(imei, None, None, 1000)
    assert [p.ts for p in got] == [T0 + dt.timedelta(seconds=i) for i in range(51)]


async def test_the_first_write_of_a_point_wins(location_store: LocationStore) -> None:
    imei = new_imei()
    await location_store.write([pt(imei, 0, lat=1.0)])
    await location_store.write([pt(imei, 0, lat=2.0)])
    assert [p.lat for p in await location_store.track(imei, None, None, 10)] == [1.0]


async def test_concurrent_overlapping_writes_store_each_point_once(location_store: LocationStore) -> None:
    imei = new_imei()
    batches = [[pt(imei, i) for i in range(start, start + 40)] for start in (0, 20, 10, 30)]
    await asyncio.gather(*(location_store.write(b) for b in batches))
    got = await location_store.track(imei, None, None, 1000)
    assert [p.ts for p in got] == [T0 + dt.timedelta(seconds=i) for i in range(70)]


async def test_track_range_is_since_inclusive_until_exclusive_and_pages_with_after(location_store: LocationStore) -> None:
    imei, other = new_imei(), new_imei()
    await location_store.write([pt(imei, i) for i in range(20)] + [pt(other, i) for i in range(20)])
    since, until = T0 + dt.timedelta(seconds=5), T0 + dt.timedelta(seconds=15)
    got = await location_store.track(imei, since, until, 100)
    assert [p.ts for p in got] == [T0 + dt.timedelta(seconds=i) for i in range(5, 15)]
    assert all(p.imei == imei for p in got)
    # keyset paging: strictly after the last point of the previous page
    pages, after = [], None
    while True:
        page = await location_store.track(imei, since, until, 3, after=after)
        if not page:
            break
        pages.append(page)
        after = page[-1].ts
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [p for page in pages for p in page] == got
    # sub-millisecond bounds
    edge = T0 + dt.timedelta(seconds=7, microseconds=1)
    assert (await location_store.track(imei, edge, None, 1))[0].ts == T0 + dt.timedelta(seconds=8)
    assert (await location_store.track(imei, None, edge, 100))[-1].ts == T0 + dt.timedelta(seconds=7)
    assert await location_store.track(imei, None, None, 0) == []
    assert await location_store.track(new_imei(), None, None, 10) == []


async def test_latest_is_the_newest_point_and_never_moves_back(location_store: LocationStore) -> None:
    a, b, c = sorted(new_imei() for _ in range(3))
    await location_store.write([pt(a, 5, lat=5.0), pt(a, 3, lat=3.0), pt(b, 1, lat=1.0)])
    await location_store.write([pt(a, 4, lat=4.0), pt(b, 2, lat=2.0, speed_kmh=10.0)])  # a older, b newer
    latest = await location_store.latest([a, b])
    assert [(p.imei, p.lat, p.ts) for p in latest] == [(a, 5.0, T0 + dt.timedelta(seconds=5)),
                                                       (b, 2.0, T0 + dt.timedelta(seconds=2))]
    assert latest[1].speed_kmh == 10.0
    await location_store.write([pt(c, 0)])
    assert [p.imei for p in await location_store.latest([c])] == [c]
    assert {a, b, c} <= {p.imei for p in await location_store.latest()}
    assert await location_store.latest([]) == []
    assert await location_store.latest([new_imei()]) == []


async def test_concurrent_batches_leave_the_newest_as_latest(location_store: LocationStore) -> None:
    imei = new_imei()
    await asyncio.gather(*(location_store.write([pt(imei, i)]) for i in range(20)))
    (latest,) = await location_store.latest([imei])
    assert latest.ts == T0 + dt.timedelta(seconds=19)


async def test_ping_and_reopen_keep_the_data(location_store: LocationStore) -> None:
    imei = new_imei()
    await location_store.ping()
    await location_store.write([pt(imei, 0)])
    await location_store.close()
    await location_store.open()
    assert len(await location_store.track(imei, None, None, 10)) == 1


async def test_empty_write_is_a_no_op(location_store: LocationStore) -> None:
    await location_store.write([])


# -- MongoDB without a unique index (what a real mongod offers on a time-series collection) --------

@pytest.mark.mongo
async def test_mongo_without_unique_index_dedupes_on_write_and_on_read(mongo_db_url: str) -> None:
    from truckx_server.storage.locations_mongo import MongoLocationStore, _doc

    store = MongoLocationStore(mongo_db_url, pool_size=2, timeout_s=5, unique_index=False)
    await store.open()
    try:
        assert not store.unique
        imei = new_imei()
        batch = [pt(imei, i) for i in range(10)]
        await store.write(batch)
        await store.write(batch[5:] + [pt(imei, 10)])
        raw = store.client[store.db_name]["locations"]
        assert await raw.count_documents({"imei": imei}) == 11  # dedupe on write
        # a duplicate that slipped in anyway (a racing writer) is never seen by a query
        await raw.insert_one(_doc(batch[3]))
        got = await store.track(imei, None, None, 100)
        assert [p.ts for p in got] == [T0 + dt.timedelta(seconds=i) for i in range(11)]
        assert [p.ts for p in await store.track(imei, None, None, 4)] == [p.ts for p in got[:4]]
        assert [p.ts for p in await store.track(imei, None, None, 2, after=got[2].ts)] == [p.ts for p in got[3:5]]
    finally:
        await store.close()


@pytest.mark.mongo
async def test_mongo_store_reports_what_it_created(mongo_db_url: str) -> None:
    from truckx_server.storage.locations_mongo import MongoLocationStore

    store = MongoLocationStore(mongo_db_url, pool_size=2, timeout_s=5)
    await store.open()
    try:
        indexes = await store.client[store.db_name]["locations"].index_information()
        assert any(spec["key"][:2] == [("imei", 1), ("ts", 1)] for spec in indexes.values())
        assert store.time_series  # SecantusDB and MongoDB >= 5 both have time-series collections
    finally:
        await store.close()


@pytest.mark.mongo
async def test_mongo_store_down_is_unavailable_quickly() -> None:
    from tests.backends import free_port
    from truckx_server.errors import Unavailable
    from truckx_server.storage.locations_mongo import MongoLocationStore

    store = MongoLocationStore(f"mongodb://127.0.0.1:{free_port()}/x?directConnection=true", timeout_s=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable):
        await store.open()
    with pytest.raises(Unavailable):
        await store.ping()
    assert loop.time() - started < 5
    await store.close()


async def test_delete_before_removes_the_oldest_in_bounded_batches(location_store: LocationStore) -> None:
    a, b = new_imei(), new_imei()
    await location_store.write([pt(a, i) for i in range(20)] + [pt(a, 20.000001), pt(b, 0), pt(b, 100)])
    cutoff = T0 + dt.timedelta(seconds=10.5)
    assert sorted(await location_store.devices()) == sorted([a, b])
    assert await location_store.delete_before(a, cutoff, 4) == 4  # the four oldest
    assert [p.ts for p in await location_store.track(a, None, None, 100)][:2] == [T0 + dt.timedelta(seconds=4),
                                                                                  T0 + dt.timedelta(seconds=5)]
    assert await location_store.delete_before(a, cutoff, 4) == 4
    assert await location_store.delete_before(a, cutoff, 4) == 3  # fewer than asked: nothing older is left
    assert await location_store.delete_before(a, cutoff, 4) == 0
    kept = await location_store.track(a, None, None, 100)
    assert [p.ts for p in kept] == [T0 + dt.timedelta(seconds=i) for i in range(11, 20)] + [
        T0 + dt.timedelta(seconds=20.000001)]
    # the cutoff is exact to the microsecond, and the other device is untouched
    assert await location_store.delete_before(a, T0 + dt.timedelta(seconds=20.000001), 100) == 9
    assert [p.ts for p in await location_store.track(a, None, None, 100)] == [T0 + dt.timedelta(seconds=20.000001)]
    assert len(await location_store.track(b, None, None, 100)) == 2
    # deleting every point keeps the device's latest position
    assert await location_store.delete_before(a, T0 + dt.timedelta(days=1), 100) == 1
    assert [p.ts for p in await location_store.latest([a])] == [T0 + dt.timedelta(seconds=20.000001)]


async def test_stats_count_exactly_and_find_the_oldest(location_store: LocationStore) -> None:
    empty = await location_store.stats()
    assert empty["count"] == 0 and empty["oldest"] is None
    a, b = new_imei(), new_imei()
    await location_store.write([pt(a, i) for i in range(1, 30)] + [pt(b, 0.5), pt(b, 7)])
    await location_store.write([pt(a, 3)])  # a resend counts once
    stats = await location_store.stats()
    assert stats["count"] == 31 and stats["oldest"] == T0 + dt.timedelta(seconds=0.5)
    assert stats["bytes"] > 0
    await location_store.delete_before(b, T0 + dt.timedelta(seconds=1), 10)
    stats = await location_store.stats()
    assert stats["count"] == 30 and stats["oldest"] == T0 + dt.timedelta(seconds=1)
