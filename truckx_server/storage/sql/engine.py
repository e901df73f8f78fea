"""The relational engine: URLs and drivers, connection pool, SQLite pragmas, and one transaction runner
with a timeout and retries of transient failures. The aggregates (``devices.py``, ``users.py``, ...)
build their queries on it; nothing here knows a table.

One set of queries serves SQLite (aiosqlite, the embedded default) and MySQL/MariaDB (aiomysql). Times
are stored as naive UTC and handed out as aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ... import privacy
from ...errors import Unavailable
from ...models import UTC
from ..retry import backoff

log = logging.getLogger("truckx.sql")
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a group commit
R = TypeVar("R")

#: set in a connection's ``info`` by a transaction that wrote outbox rows (``outbox.record``): once it
#: has committed, :attr:`SqlEngine.on_outbox` callbacks run (the webhook dispatcher wakes up)
OUTBOX_MARK = "truckx_outbox_written"


def to_db(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def from_db(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: driver per backend: (async, for the server; blocking, for Alembic)
_DRIVERS = {"sqlite": ("sqlite+aiosqlite", "sqlite"), "mysql": ("mysql+aiomysql", "mysql+pymysql"),
            "mariadb": ("mysql+aiomysql", "mysql+pymysql")}


def _with_driver(url: str, blocking: bool) -> str:
    parsed = make_url(url)
    drivers = _DRIVERS.get(parsed.get_backend_name())
    if drivers is None:
        raise ValueError(f"unsupported SQL URL scheme {parsed.drivername!r}")
    query = dict(parsed.query)
    if parsed.get_backend_name() != "sqlite":
        query.setdefault("charset", "utf8mb4")
    return parsed.set(drivername=drivers[blocking], query=query).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """``sqlite:///x`` -> ``sqlite+aiosqlite:///x``; ``mysql://`` / ``mariadb://`` -> ``mysql+aiomysql://``."""
    return _with_driver(url, blocking=False)


def sync_url(url: str) -> str:
    """The same database through a blocking driver, for Alembic."""
    return _with_driver(url, blocking=True)


def newest_first_window(time_col: Any, id_col: Any, since: dt.datetime | None, until: dt.datetime | None,
                        before: tuple[dt.datetime, Any] | None) -> list[Any]:
    """The conditions of one page of a newest-first list (``ORDER BY time DESC, id DESC``):
    ``since <= time < until``, and strictly after the previous page's last row ``before = (time, id)``."""
    cond: list[Any] = []
    if since is not None:
        cond.append(time_col >= to_db(since))
    if until is not None:
        cond.append(time_col < to_db(until))
    if before is not None:
        at, last_id = to_db(before[0]), before[1]
        cond.append(sa.or_(time_col < at, sa.and_(time_col == at, id_col < last_id)))
    return cond


def row_dict(row: Any) -> dict[str, Any]:
    """A result row as a dict, its datetimes aware UTC."""
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = from_db(value)
    return out


class SqlEngine:
    """A connection pool and :meth:`run`: every store call is one short transaction with a timeout;
    transient connection failures are retried with backoff before surfacing as :class:`Unavailable`."""

    def __init__(self, url: str, pool_size: int = 10, timeout_s: float = 10.0, retries: int = 3) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.dialect = make_url(url).get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            path = make_url(url).database
            if path and path != ":memory:":
                privacy.private_file(Path(path))  # before SQLite creates it (its journals take the file's mode)
            kwargs["connect_args"] = {"timeout": timeout_s}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_pre_ping=True,
                          pool_timeout=timeout_s, connect_args={"connect_timeout": int(max(1, timeout_s))})
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        #: the same pool; on SQLite its transactions start with BEGIN IMMEDIATE (take the write lock first)
        self._writer: AsyncEngine = self.engine.execution_options(truckx_write=True)
        #: called (no arguments) after each commit of a transaction that wrote outbox rows
        self.on_outbox: list[Callable[[], None]] = []
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    async def close(self) -> None:
        await self.engine.dispose()

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[T]], write: bool = True) -> T:
        """``fn(conn)`` in one transaction (a write transaction unless ``write=False``)."""
        delays = backoff(0.1, 2.0)
        for attempt in range(self.retries + 1):
            try:
                async with asyncio.timeout(self.timeout_s):
                    async with (self._writer.begin() if write else self.engine.connect()) as conn:
                        conn.info.pop(OUTBOX_MARK, None)
                        result = await fn(conn)
                        wrote_outbox = conn.info.pop(OUTBOX_MARK, False)
                if wrote_outbox:
                    self._outbox_committed()
                return result
            except IntegrityError:
                raise
            except (OperationalError, DBAPIError, OSError, TimeoutError) as exc:
                if isinstance(exc, DBAPIError) and not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                if attempt == self.retries:
                    log.warning("relational store unavailable: %s", type(exc).__name__)
                    raise Unavailable("the relational store is unavailable; try again") from exc
                await asyncio.sleep(next(delays))
        raise AssertionError("unreachable")

    def _outbox_committed(self) -> None:
        for callback in list(self.on_outbox):
            try:
                callback()
            except Exception:  # a broken listener must not fail the committed change
                log.exception("outbox listener failed")

    async def ping(self) -> None:
        async def q(conn: AsyncConnection) -> None:
            await conn.execute(sa.text("SELECT 1"))
        await self.run(q, write=False)

    async def one(self, stmt: Any) -> dict[str, Any] | None:
        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(stmt)).first()
            return row_dict(row) if row is not None else None
        return await self.run(q, write=False)

    async def all(self, stmt: Any) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [row_dict(r) for r in (await conn.execute(stmt)).all()]
        return await self.run(q, write=False)

    async def execute(self, stmt: Any) -> int:
        """Run one write statement; returns the number of rows it matched."""
        async def q(conn: AsyncConnection) -> int:
            return (await conn.execute(stmt)).rowcount
        return await self.run(q)


class GroupCommit(Generic[I, R]):
    """Concurrent calls of one kind of write, committed together: :meth:`submit` queues an item and
    waits; one writer at a time takes everything queued (up to ``max_items``) and hands it to
    ``run_batch``, which writes the whole batch in one transaction and returns one result per item, in
    order (or an exception object for an item that failed on its own). While a batch is being written
    the next one gathers, so a lone call waits for nothing and N concurrent calls cost about one
    transaction (one fsync, one round of lock handovers) instead of N. If ``run_batch`` raises, every
    item of that batch gets the exception."""

    def __init__(self, run_batch: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]],
                 max_items: int = 100) -> None:
        self.run_batch = run_batch
        self.max_items = max_items
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self.max_items], self._queue[self.max_items:]
            try:
                results = await self.run_batch([item for item, _ in batch])
            except BaseException as exc:  # noqa: B036 - handed to every waiter, cancellation included
                if isinstance(exc, asyncio.CancelledError):  # the writer is going away: nobody waits forever
                    batch, self._queue = batch + self._queue, []
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # the driver's own transaction handling starts a transaction only before DML, so a read-then-write
    # (SELECT ... FOR UPDATE, then DELETE) would not be isolated; SQLAlchemy emits BEGIN itself instead
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged write survives an OS crash or power loss (NORMAL in WAL mode may lose the
    # last commits then); the cost is measured in README ("Configuration")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("truckx_write") else "BEGIN")
