"""Store interfaces. Each has an embedded implementation and a production one, picked by URL; one
contract test suite (tests/storage/) runs every interface against every backend."""

from __future__ import annotations

import datetime as dt
from typing import Any, AsyncIterator, Protocol, Sequence

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
    """Video objects under ``<imei>/<name>``, written through a temporary part file."""

    def part_size(self, imei: str, name: str) -> int: ...

    def exists(self, imei: str, name: str) -> bool: ...

    def open_read(self, imei: str, name: str) -> Any: ...

    def iter_range(self, imei: str, name: str, start: int, end: int) -> AsyncIterator[bytes]: ...
