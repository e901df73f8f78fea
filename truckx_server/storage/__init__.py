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


def make_video_store(settings: "Settings", sql: "SqlStore") -> VideoStore:
    """By ``settings.resolved_video_url``: ``file:///path`` or ``s3://bucket/prefix``."""
    from ..config import video_location

    kind, where, prefix = video_location(settings.resolved_video_url)
    if kind == "s3":
        from .videos_s3 import S3VideoStore
        return S3VideoStore(where, prefix, sql.uploads, part_size=settings.s3_part_size,
                            abandon_after_s=settings.upload_abandon_after_s, timeout_s=settings.store_timeout_s)
    from pathlib import Path

    from .videos_fs import FsVideoStore
    return FsVideoStore(Path(where))
