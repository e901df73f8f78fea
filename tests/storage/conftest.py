"""Store fixtures for the contract suite: every store interface against every backend it has.

``location_store``: SQLite file, MongoDB (SecantusDB over TCP). ``sql_store``: SQLite file, MariaDB.
Each gets a fresh, empty store (a new file or a new database, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.backends import mysql_database
from truckx_server import migrate
from truckx_server.storage.base import LocationStore
from truckx_server.storage.sql import SqlStore


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("mongo", id="mongo", marks=pytest.mark.mongo)])
async def location_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocationStore]:
    store: LocationStore
    if request.param == "sqlite":
        from truckx_server.storage.locations_sqlite import SqliteLocationStore
        store = SqliteLocationStore(f"sqlite:///{tmp_path / 'locations.db'}", timeout_s=5)
    else:
        from truckx_server.storage.locations_mongo import MongoLocationStore
        store = MongoLocationStore(request.getfixturevalue("mongo_db_url"), pool_size=4, timeout_s=5)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb)])
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    database = (contextlib.nullcontext(f"sqlite:///{tmp_path / 'truckx.db'}") if request.param == "sqlite"
                else mysql_database())
    with database as url:
        await asyncio.to_thread(migrate.upgrade, url)
        store = SqlStore(url, pool_size=4, timeout_s=5)
        try:
            yield store
        finally:
            await store.close()
