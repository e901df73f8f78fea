"""Location time series in MongoDB, through pymongo's ``AsyncMongoClient``.

Collections (in the database named by the URL's path, ``truckx`` when it has none):

``locations``
    A time-series collection (``timeField: ts``, ``metaField: imei``, granularity seconds) where the
    server supports one, else a regular collection. ``ts`` is a BSON date (milliseconds); ``tsu``
    holds the microseconds below the millisecond, so times round-trip exactly as in the SQLite store.
    Index ``{imei: 1, ts: 1, tsu: 1}`` serves the track query (one device, a time range, ascending).

``latest``
    One document per device (``_id`` = IMEI) with its newest point and ``k`` = microseconds since
    the epoch. It is updated with a conditional upsert ``{_id: imei, k: {$lt: new_k}}``: when the stored
    point is newer the filter does not match, the upsert collides on ``_id`` (E11000) and that error is
    ignored, so concurrent or reordered batches never move a device backwards.

Dedupe on ``(imei, ts)``:
    * where the server accepts a *unique* index on ``{imei, ts, tsu}`` (regular collections; SecantusDB
      also on time-series ones) writes are an unordered ``insert_many`` that ignores duplicate-key
      errors, so storage never holds a duplicate;
    * MongoDB itself refuses unique indexes on time-series collections. There each write first reads
      which of the batch's ``(imei, ts)`` are stored already and inserts only the rest (dedupe on write),
      and :meth:`track` drops any duplicate that still got in (two writers racing, or an insert retried
      after a timeout although the first attempt had landed): dedupe on read, so no query ever sees one.

Every call has a timeout (``timeoutMS``, client-side operation timeout) and transient failures
(network errors, no server selectable, timeouts) are retried with backoff within that budget before
surfacing as :class:`~truckx_server.errors.Unavailable`. Writes use ``w=majority, j=true``: :meth:`write`
returns only once the server has confirmed them, which is what the ingest path's acks rely on.

Retention (:meth:`delete_before`): per device, the ``_id`` of its oldest points below the cutoff (the
index ``{imei, ts, tsu}``) then one ``delete_many`` of those ids, a bounded batch per call. Deleting
from a time-series collection by ``_id`` needs MongoDB 7.0 or newer (earlier servers accept only
deletes that filter on the meta field); regular collections and SecantusDB take it on any version.

Sharded cluster: shard ``locations`` on ``{imei: 1, ts: 1}`` (time-series: ``{imei: 1, ts: 1}`` with
the meta field first) and leave ``latest`` unsharded (one small document per device) or shard it on
``{_id: "hashed"}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import (BulkWriteError, CollectionInvalid, ConnectionFailure, DuplicateKeyError,
                            ExecutionTimeout, NetworkTimeout, OperationFailure, PyMongoError,
                            ServerSelectionTimeoutError, WTimeoutError)
from pymongo.write_concern import WriteConcern

from ..errors import Unavailable
from ..models import UTC, LocationPoint
from .base import from_us, to_us
from .retry import backoff

log = logging.getLogger("truckx.locations.mongo")
T = TypeVar("T")

_MS = dt.timedelta(milliseconds=1)
_FIELDS = ("lat", "lon", "speed_kmh", "heading", "alt_m", "accuracy_m")
_DUPLICATE_KEY = 11000
#: transient: worth retrying (the driver already retried once where the operation allows it)
_TRANSIENT = (ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError, ExecutionTimeout, WTimeoutError)


def _split(value: dt.datetime) -> tuple[dt.datetime, int]:
    """A time as (BSON date to the millisecond, microseconds below it)."""
    us = to_us(value)
    return from_us(us - us % 1000), us % 1000


def _doc(p: LocationPoint) -> dict[str, Any]:
    ts, tsu = _split(p.ts)
    doc: dict[str, Any] = {"imei": p.imei, "ts": ts, "tsu": tsu}
    for key in _FIELDS:
        value = getattr(p, key)
        if value is not None:
            doc[key] = value
    return doc


def _point(doc: dict[str, Any]) -> LocationPoint:
    ts = doc["ts"]
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return LocationPoint(imei=doc["imei"], ts=ts + dt.timedelta(microseconds=doc.get("tsu", 0)),
                         lat=doc["lat"], lon=doc["lon"], speed_kmh=doc.get("speed_kmh"),
                         heading=doc.get("heading"), alt_m=doc.get("alt_m"), accuracy_m=doc.get("accuracy_m"))


def _doc_us(doc: dict[str, Any]) -> int:
    """A stored document's time in microseconds since the epoch."""
    ts = doc["ts"]
    return to_us(ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)) + doc.get("tsu", 0)


def database_name(url: str) -> str:
    """The database in ``mongodb://host[:port][,...]/db?opts`` (``truckx`` when there is none); no DNS."""
    rest = url.split("://", 1)[-1]
    path = rest.split("/", 1)[1] if "/" in rest else ""
    return path.split("?", 1)[0] or "truckx"


def _only_duplicates(exc: BulkWriteError) -> bool:
    details = exc.details or {}
    errors = details.get("writeErrors") or []
    return bool(errors) and all(e.get("code") == _DUPLICATE_KEY for e in errors) \
        and not details.get("writeConcernErrors")


class MongoLocationStore:
    def __init__(self, url: str, pool_size: int = 10, timeout_s: float = 10.0, *,
                 unique_index: bool | None = None, time_series: bool = True, retries: int = 3) -> None:
        """``unique_index``: None tries to create the unique ``(imei, ts)`` index and falls back to
        check-then-insert when the server refuses it; False never creates it (tests the fallback)."""
        self.url = url
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.retries = retries
        self.want_unique = unique_index
        self.want_time_series = time_series
        self.db_name = database_name(url)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        #: set by open(): whether the collection is time-series and whether the unique index exists
        self.time_series = False
        self.unique = False

    # -- life cycle ------------------------------------------------------------------------------

    def _new_client(self) -> AsyncMongoClient[dict[str, Any]]:
        ms = int(self.timeout_s * 1000)
        return AsyncMongoClient(
            self.url, tz_aware=True, tzinfo=UTC, maxPoolSize=self.pool_size, minPoolSize=0,
            timeoutMS=ms, serverSelectionTimeoutMS=min(ms, 5000), connectTimeoutMS=min(ms, 5000),
            waitQueueTimeoutMS=ms, retryWrites=True, retryReads=True, w="majority", journal=True,
            appname="truckx-server")

    @property
    def client(self) -> AsyncMongoClient[dict[str, Any]]:
        if self._client is None:
            raise Unavailable("location store is not open")
        return self._client

    def _coll(self, name: str) -> Any:
        return self.client[self.db_name].get_collection(
            name, write_concern=WriteConcern(w="majority", j=True))

    async def open(self) -> None:
        if self._client is None:
            self._client = self._new_client()
        await self._retry(self._ensure_schema, "open")

    async def _ensure_schema(self) -> None:
        db = self.client[self.db_name]
        existing = await db.list_collections(filter={"name": "locations"})
        info = await existing.to_list()
        if not info:
            if self.want_time_series:
                try:
                    await db.create_collection("locations", timeseries={
                        "timeField": "ts", "metaField": "imei", "granularity": "seconds"})
                except CollectionInvalid:  # created concurrently
                    pass
                except OperationFailure as exc:
                    log.info("time-series collections unsupported (%s); using a regular collection", exc.code)
                    await self._create_plain(db)
            else:
                await self._create_plain(db)
            info = await (await db.list_collections(filter={"name": "locations"})).to_list()
        self.time_series = bool(info and info[0].get("options", {}).get("timeseries"))
        locations = db["locations"]
        keys = [("imei", ASCENDING), ("ts", ASCENDING), ("tsu", ASCENDING)]
        self.unique = False
        if self.want_unique is not False:
            try:
                await locations.create_index(keys, name="imei_ts_unique", unique=True)
                self.unique = True
            except OperationFailure as exc:
                if self.want_unique:
                    raise
                log.info("unique (imei, ts) index refused (%s): deduplicating on write and read", exc.code)
        if not self.unique:
            await locations.create_index(keys, name="imei_ts")

    async def _create_plain(self, db: Any) -> None:
        try:
            await db.create_collection("locations")
        except CollectionInvalid:
            pass

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def ping(self) -> None:
        async def q() -> None:
            await self.client.admin.command("ping")
        await self._retry(q, "ping", retries=0)

    # -- retries ---------------------------------------------------------------------------------

    async def _retry(self, fn: Callable[[], Awaitable[T]], what: str, retries: int | None = None) -> T:
        retries = self.retries if retries is None else retries
        delays = backoff(0.1, 1.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        for attempt in range(retries + 1):
            try:
                async with asyncio.timeout(max(0.05, deadline - loop.time())):
                    return await fn()
            except (TimeoutError, *_TRANSIENT) as exc:
                delay = next(delays)
                if attempt == retries or loop.time() + delay >= deadline:
                    log.warning("location store unavailable during %s: %s", what, type(exc).__name__)
                    raise Unavailable("the location store is unavailable; try again") from exc
                await asyncio.sleep(delay)
            except PyMongoError as exc:
                if exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError"):
                    if attempt < retries:
                        await asyncio.sleep(next(delays))
                        continue
                    raise Unavailable("the location store is unavailable; try again") from exc
                raise
        raise AssertionError("unreachable")

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, points: Sequence[LocationPoint]) -> None:
        if not points:
            return
        docs: dict[tuple[str, dt.datetime, int], dict[str, Any]] = {}
        for p in points:  # a batch may carry the same point twice (a resend racing its original)
            d = _doc(p)
            docs.setdefault((d["imei"], d["ts"], d["tsu"]), d)
        newest: dict[str, LocationPoint] = {}
        for p in points:
            if p.imei not in newest or p.ts > newest[p.imei].ts:
                newest[p.imei] = p

        async def attempt() -> None:
            await self._insert(docs)
            await self._update_latest(newest.values())
        await self._retry(attempt, "write")

    async def _insert(self, docs: dict[tuple[str, dt.datetime, int], dict[str, Any]]) -> None:
        locations = self._coll("locations")
        todo = docs
        if not self.unique:
            todo = dict(docs)
            for key in await self._stored_keys(docs):
                todo.pop(key, None)
        if not todo:
            return
        # fresh dicts: insert_many adds an _id to the documents it is given, and a retry must not
        # re-send those ids
        try:
            await locations.insert_many([dict(d) for d in todo.values()], ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise

    async def _stored_keys(self, docs: dict[tuple[str, dt.datetime, int], dict[str, Any]]) -> set[tuple]:
        """Which of ``docs`` are stored already: one range query per device in the batch."""
        ranges: dict[str, tuple[dt.datetime, dt.datetime]] = {}
        for imei, ts, _ in docs:
            lo, hi = ranges.get(imei, (ts, ts))
            ranges[imei] = (min(lo, ts), max(hi, ts))
        # "$lt hi + 1 ms" rather than "$lte hi": SecantusDB's index scan drops the upper bound's equal
        # keys when the index has a field after ts
        clauses = [{"imei": imei, "ts": {"$gte": lo, "$lt": hi + _MS}} for imei, (lo, hi) in ranges.items()]
        found: set[tuple] = set()
        for i in range(0, len(clauses), 500):
            query = {"$or": clauses[i:i + 500]} if len(clauses[i:i + 500]) > 1 else clauses[i]
            cursor = self._coll("locations").find(query, {"_id": 0, "imei": 1, "ts": 1, "tsu": 1})
            async for d in cursor:
                found.add((d["imei"], d["ts"], d.get("tsu", 0)))
        return found

    async def _update_latest(self, newest: Any) -> None:
        ops = []
        for p in newest:
            k = to_us(p.ts)
            doc = {"imei": p.imei, "k": k, "ts": p.ts}
            for key in _FIELDS:
                doc[key] = getattr(p, key)
            ops.append(UpdateOne({"_id": p.imei, "k": {"$lt": k}}, {"$set": doc}, upsert=True))
        if not ops:
            return
        try:
            await self._coll("latest").bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # E11000: the stored point is as new or newer; the filter did not match and the upsert hit _id
            if not _only_duplicates(exc):
                raise
        except DuplicateKeyError:
            pass

    # -- reads -----------------------------------------------------------------------------------

    async def track(self, imei: str, since: dt.datetime | None, until: dt.datetime | None,
                    limit: int, after: dt.datetime | None = None) -> list[LocationPoint]:
        if limit <= 0:
            return []
        lows = [to_us(since)] if since is not None else []
        if after is not None:
            lows.append(to_us(after) + 1)
        lo_us = max(lows) if lows else None
        hi_us = to_us(until) if until is not None else None  # exclusive
        query: dict[str, Any] = {"imei": imei}
        bounds: dict[str, Any] = {}
        if lo_us is not None:
            bounds["$gte"] = from_us(lo_us - lo_us % 1000)
        if hi_us is not None:
            bounds["$lt"] = from_us(hi_us - hi_us % 1000) + _MS  # see _stored_keys
        if bounds:
            query["ts"] = bounds

        async def q() -> list[LocationPoint]:
            out: list[LocationPoint] = []
            last: int | None = None
            cursor = self._coll("locations").find(query, {"_id": 0}).sort(
                [("ts", ASCENDING), ("tsu", ASCENDING)]).batch_size(min(limit + 16, 10_000))
            try:
                async for doc in cursor:
                    p = _point(doc)
                    us = to_us(p.ts)
                    if lo_us is not None and us < lo_us:
                        continue
                    if hi_us is not None and us >= hi_us:
                        break
                    if us == last:  # a duplicate that got past dedupe on write
                        continue
                    last = us
                    out.append(p)
                    if len(out) >= limit:
                        break
            finally:
                await cursor.close()
            return out
        return await self._retry(q, "track")

    async def latest(self, imeis: Sequence[str] | None = None) -> list[LocationPoint]:
        if imeis is not None and not imeis:
            return []
        query: dict[str, Any] = {"_id": {"$in": list(imeis)}} if imeis else {}

        async def q() -> list[LocationPoint]:
            docs = await self._coll("latest").find(query).sort("_id", ASCENDING).to_list()
            return [LocationPoint(imei=d["_id"], ts=from_us(d["k"]), lat=d["lat"], lon=d["lon"],
                                  speed_kmh=d.get("speed_kmh"), heading=d.get("heading"), alt_m=d.get("alt_m"),
                                  accuracy_m=d.get("accuracy_m")) for d in docs]
        return await self._retry(q, "latest")

    # -- retention -------------------------------------------------------------------------------

    async def devices(self) -> list[str]:
        async def q() -> list[str]:
            return [d["_id"] for d in await self._coll("latest").find({}, {"_id": 1}).sort("_id", ASCENDING).to_list()]
        return await self._retry(q, "devices")

    async def delete_before(self, imei: str, before: dt.datetime, limit: int) -> int:
        cut_us = to_us(before)
        # by the index to the cutoff's millisecond (see _stored_keys for "$lt + 1 ms"), then exactly
        query = {"imei": imei, "ts": {"$lt": from_us(cut_us - cut_us % 1000) + _MS}}

        async def q() -> int:
            docs = await self._coll("locations").find(query, {"_id": 1, "ts": 1, "tsu": 1}).sort(
                [("ts", ASCENDING), ("tsu", ASCENDING)]).limit(limit).to_list()
            ids = [d["_id"] for d in docs if _doc_us(d) < cut_us]
            if not ids:
                return 0
            result = await self._coll("locations").delete_many({"_id": {"$in": ids}})
            return int(result.deleted_count)
        return await self._retry(q, "delete")

    async def stats(self) -> dict[str, Any]:
        async def q() -> dict[str, Any]:
            locations = self._coll("locations")
            count = await locations.count_documents({})
            oldest: dt.datetime | None = None
            for imei in await self.devices():  # one index seek per device (the index leads with imei)
                doc = await locations.find_one({"imei": imei}, {"_id": 0}, sort=[("ts", ASCENDING), ("tsu", ASCENDING)])
                if doc is not None:
                    first = _point(doc).ts
                    if oldest is None or first < oldest:
                        oldest = first
            size: int | None = None
            try:
                info = await self.client[self.db_name].command({"collStats": "locations"})
                size = int(info.get("storageSize") or info.get("size") or 0) + int(info.get("totalIndexSize") or 0)
            except PyMongoError:
                size = None
            if not size and count:
                size = count * 100  # no statistics: about 100 bytes a point
            return {"count": int(count), "bytes": int(size or 0), "oldest": oldest}
        return await self._retry(q, "stats")
