"""Store interfaces (the factory that picks an implementation by URL is in ``storage/__init__.py``). Each
interface has an embedded implementation and a production one; one contract test suite (tests/storage/)
runs every interface against every backend.

Location times are integer microseconds since the epoch inside the stores (:func:`to_us`,
:func:`from_us`), exact on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence

from ..models import UTC, LocationPoint

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def to_us(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


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

    async def devices(self) -> list[str]:
        """Every IMEI that has stored points (retention walks them)."""

    async def delete_before(self, imei: str, before: dt.datetime, limit: int) -> int:
        """Delete at most ``limit`` of the device's oldest points with ``ts < before``, in one short
        write; returns how many went (fewer than ``limit``: nothing older is left). The device's newest
        point (``latest``) is kept."""

    async def stats(self) -> dict[str, Any]:
        """``{count, bytes, oldest}``: the exact number of points, an estimate of the bytes they take
        and the ``ts`` of the oldest (None when empty). Runs without holding up writes."""


class UploadClaim(Protocol):
    """The right to write one video (one upload of a file at a time). A context manager: leaving the
    ``with`` block releases it, unless :meth:`hand_over` gave it to a writer that releases it later."""

    def hand_over(self) -> None: ...

    def release(self) -> None: ...

    def __enter__(self) -> "UploadClaim": ...

    def __exit__(self, *exc: Any) -> None: ...


class PartWriter(Protocol):
    """One upload in progress: bytes appended to an incomplete object, hashed on the way."""

    imei: str
    name: str
    size: int
    claim: UploadClaim
    #: set by the request streaming into this writer: cuts its connection off (a newer one takes over)
    on_preempt: Callable[[], None] | None

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        """Take a chunk; an awaitable to wait for before the next one when the store lags behind."""

    def hexdigest(self) -> str: ...

    async def close(self, durable: bool = True) -> int:
        """Make the received bytes durable (when ``durable``); returns the size, the offset a resume
        continues from."""


class VideoStore(Protocol):
    """Video objects under ``<imei>/<name>``: uploads are written to an incomplete object that becomes
    visible only once complete. Every call is async: file and network work runs off the event loop."""

    async def ping(self) -> None: ...

    async def object_size(self, imei: str, name: str) -> int | None:
        """Size of the complete object, None when there is none."""

    async def part_size(self, imei: str, name: str) -> int:
        """Bytes durably received of an unfinished upload (0 when there is none)."""

    async def take_over(self, imei: str, name: str) -> None:
        """Cut off an upload of (imei, name) still in progress and wait until the file is free."""

    def claim(self, imei: str, name: str) -> UploadClaim:
        """Reserve (imei, name) for one upload; :class:`~truckx_server.errors.Conflict` while another runs."""

    def is_busy(self, imei: str, name: str) -> bool: ...

    async def open_part(self, claim: UploadClaim, resume: bool) -> PartWriter:
        """Open the claimed upload: empty, or (``resume``) the stored part to append to."""

    async def commit(self, imei: str, name: str) -> None:
        """Make the finished part visible as the object."""

    async def discard_part(self, imei: str, name: str) -> None: ...

    async def sha256(self, imei: str, name: str) -> str: ...

    def iter_range(self, imei: str, name: str, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The bytes ``start <= i < end`` of a complete object, in chunks."""

    async def put_thumbnail(self, imei: str, name: str, data: bytes) -> None:
        """Keep the JPEG thumbnail of a video beside it, where no video name can reach (replaces)."""

    async def get_thumbnail(self, imei: str, name: str) -> bytes | None:
        """The thumbnail of a video (a few KiB), None when there is none."""
    async def delete(self, imei: str, name: str) -> bool:
        """Remove the complete object (imei, name), its thumbnail, and any part of it that no upload on
        this process is writing; True when something was removed. Deleting what is not there is not an
        error."""

    async def aclose(self) -> None: ...
