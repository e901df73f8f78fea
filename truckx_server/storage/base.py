"""Store interfaces. Each has an embedded implementation and a production one, picked by URL; one
contract test suite (tests/storage/) runs every interface against every backend."""

from __future__ import annotations

import datetime as dt
from typing import AsyncIterator, Protocol, Sequence

from ..models import LocationPoint


class LocationStore(Protocol):
    """Time series of device positions, unique on ``(imei, ts)``."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    async def write(self, points: Sequence[LocationPoint]) -> None:
        """Store ``points`` durably in one batch. A point whose ``(imei, ts)`` is stored already is
        skipped, so writing the same batch twice stores it once. Returns only once durable."""

    async def track(self, imei: str, since: dt.datetime | None, until: dt.datetime | None,
                    limit: int, after: dt.datetime | None = None) -> list[LocationPoint]:
        """Points of one device in ascending time, ``since <= ts < until``, strictly after ``after``."""

    async def latest(self, imeis: Sequence[str] | None = None) -> list[LocationPoint]:
        """The newest point of every device (or of the given ones)."""


class VideoStore(Protocol):
    """Video objects under ``<imei>/<name>``; uploads are written to a part file that becomes visible
    only by one rename once complete (``storage/videos_fs.py``). Every call is async: file-system work
    runs off the event loop."""

    async def ping(self) -> None: ...

    async def object_size(self, imei: str, name: str) -> int | None:
        """Size of the complete object, None when there is none."""

    async def part_size(self, imei: str, name: str) -> int:
        """Bytes durably received of an unfinished upload (0 when there is none)."""

    async def commit(self, imei: str, name: str) -> None:
        """Make the finished part visible as the object."""

    async def discard_part(self, imei: str, name: str) -> None: ...

    async def sha256(self, imei: str, name: str) -> str: ...

    def iter_range(self, imei: str, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes ``start <= i < end`` of a complete object, in chunks."""

    async def aclose(self) -> None: ...
