"""Stores, picked by URL: ``make_sql_store``, ``make_location_store``, ``make_video_store``. The interfaces
are in ``base.py``; each implementation is imported only when its URL is used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LocationStore, VideoStore

if TYPE_CHECKING:
    from ..config import Settings
    from .sql import SqlStore


def make_sql_store(settings: "Settings") -> "SqlStore":
    from .sql import SqlStore
    return SqlStore(settings.resolved_sql_url, pool_size=settings.sql_pool_size, timeout_s=settings.store_timeout_s)


def make_location_store(settings: "Settings") -> LocationStore:
    url = settings.resolved_locations_url
    if url.startswith("sqlite:"):
        from .locations_sqlite import SqliteLocationStore
        return SqliteLocationStore(url, timeout_s=settings.store_timeout_s)
    if url.startswith("mongodb:") or url.startswith("mongodb+srv:"):
        from .locations_mongo import MongoLocationStore
        return MongoLocationStore(url, pool_size=settings.sql_pool_size, timeout_s=settings.store_timeout_s)
    raise ValueError(f"unsupported locations URL scheme in {url.split(':', 1)[0]!r}")


def make_video_store(settings: "Settings") -> VideoStore:
    from .videos_fs import FsVideoStore
    return FsVideoStore(settings.resolved_video_dir)
