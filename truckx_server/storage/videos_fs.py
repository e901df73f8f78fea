"""Video objects on a directory tree.

Layout::

    <root>/<imei>/<name>              complete objects only
    <root>/.parts/<imei>/<name>.part  uploads in progress (or interrupted, waiting to be resumed)

A part becomes an object by one atomic rename once it is complete and checked, so a reader never sees a
partial file under ``<root>/<imei>/``. Every path is built only from a validated IMEI and a validated
file name (``models.validate_imei`` / ``models.validate_file_name``: no separators, no ``..``, never
starting with a dot, so ``.parts`` cannot collide with a device directory), and is checked once more to
stay under the root. Every blocking call (open, read, write, fsync, rename, stat, mkdir, unlink) runs in
a worker thread through ``aiofiles`` / ``asyncio.to_thread``; memory per upload or download is bounded
by one buffer (``WRITE_BUFFER`` / ``READ_CHUNK``), whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Coroutine

import aiofiles
import aiofiles.os

from ..errors import Conflict, InvalidArgument
from ..models import validate_file_name, validate_imei

log = logging.getLogger("truckx.videos")

PARTS_DIR = ".parts"
PART_SUFFIX = ".part"
#: bytes gathered from the network before one write to disk (one thread hop per buffer)
WRITE_BUFFER = 1024 * 1024
#: bytes read from disk per chunk when hashing or serving a file
READ_CHUNK = 256 * 1024


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PartWriter:
    """One upload in progress: appends to its part file and hashes every byte on the way.

    Bytes are buffered up to :data:`WRITE_BUFFER` before each write, so a writer never holds more
    than about one buffer of the body. ``size`` counts every accepted byte (buffered or written).
    """

    def __init__(self, store: "FsVideoStore", imei: str, name: str, path: Path, file: Any, size: int,
                 hasher: "hashlib._Hash") -> None:
        self.store = store
        self.imei = imei
        self.name = name
        self.path = path
        self.size = size
        self._file = file
        self._hasher = hasher
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        #: serialises writes with the final sync/close (a dropped connection may close concurrently)
        self.lock = asyncio.Lock()
        #: "open" while bytes may arrive, "closing" while being put away, "closed" afterwards
        self.state = "open"
        self.closed = asyncio.Event()
        #: set by the request that streams into this writer: cuts that request's connection off
        self.on_preempt: Callable[[], None] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.imei, self.name)

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        async with self.lock:
            if self.state != "open":
                raise Conflict("this upload is no longer open")
            self._hasher.update(chunk)
            self.size += len(chunk)
            self._pending.append(chunk)
            self._pending_bytes += len(chunk)
            if self._pending_bytes >= WRITE_BUFFER:
                await self._drain()

    async def _drain(self) -> None:
        if self._pending:
            chunks, self._pending, self._pending_bytes = self._pending, [], 0
            await self._file.writelines(chunks)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    async def close(self, durable: bool = True) -> int:
        """Write what is buffered, fsync (when ``durable``) and close the part file; returns its size,
        the durable offset a resumed upload continues from. Idempotent."""
        async with self.lock:
            if self.state == "closed":
                return self.size
            self.state = "closing"
            try:
                if durable:
                    await self._drain()
                    await self._file.flush()
                    await asyncio.to_thread(os.fsync, self._file.fileno())
                else:
                    self._pending, self._pending_bytes = [], 0
            finally:
                try:
                    await self._file.close()
                finally:
                    self.state = "closed"
                    self.closed.set()
            return self.size


class FsVideoStore:
    def __init__(self, root: Path) -> None:
        # resolved once at start-up, so that every path below is compared against a canonical root
        self.root = Path(os.path.realpath(root))
        self.parts_root = self.root / PARTS_DIR
        #: uploads in progress, one per (imei, name): a second concurrent upload is refused
        self._uploads: dict[tuple[str, str], PartWriter | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def ping(self) -> None:
        await aiofiles.os.makedirs(self.root, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------------

    def _under_root(self, *parts: str) -> Path:
        path = os.path.normpath(os.path.join(self.root, *parts))
        if os.path.commonpath([path, str(self.root)]) != str(self.root) or path == str(self.root):
            raise InvalidArgument("path escapes the video root")
        return Path(path)

    def object_path(self, imei: str, name: str) -> Path:
        return self._under_root(validate_imei(imei), validate_file_name(name))

    def part_path(self, imei: str, name: str) -> Path:
        path = self._under_root(PARTS_DIR, validate_imei(imei), validate_file_name(name) + PART_SUFFIX)
        if path.parent.parent != self.parts_root:
            raise InvalidArgument("path escapes the parts directory")
        return path

    # -- state -----------------------------------------------------------------------------------

    @staticmethod
    async def _size(path: Path) -> int | None:
        try:
            st = await aiofiles.os.stat(path)
        except FileNotFoundError:
            return None
        return st.st_size

    async def object_size(self, imei: str, name: str) -> int | None:
        """The size of the complete object, or None when there is none."""
        return await self._size(self.object_path(imei, name))

    async def part_size(self, imei: str, name: str) -> int:
        """Bytes of an incomplete upload on disk (0 when there is none)."""
        return await self._size(self.part_path(imei, name)) or 0

    def active(self, imei: str, name: str) -> PartWriter | None:
        return self._uploads.get((imei, name))

    def is_busy(self, imei: str, name: str) -> bool:
        return (imei, name) in self._uploads

    # -- uploads ---------------------------------------------------------------------------------

    async def take_over(self, imei: str, name: str, timeout_s: float = 10.0) -> None:
        """A newer request of the device for (imei, name) supersedes an upload still in progress, as a
        newer WebSocket replaces an older one: on a cellular link the old TCP connection is most likely
        half-open and could hold the file for minutes. The old request is cut off, its part put away at
        its durable offset, and this returns once the file is free. An upload that is already being
        finished (all its bytes arrived) is waited for, not cut off."""
        key = (validate_imei(imei), validate_file_name(name))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        preempted = False
        while key in self._uploads:
            writer = self._uploads[key]
            if not preempted and writer is not None and writer.state == "open" and writer.on_preempt:
                preempted = True
                writer.on_preempt()
            if loop.time() > deadline:
                raise Conflict("another upload of this file is in progress; try again later")
            await asyncio.sleep(0.01)

    def claim(self, imei: str, name: str) -> None:
        """Reserve (imei, name) for one upload; :class:`Conflict` while another one runs."""
        key = (validate_imei(imei), validate_file_name(name))
        if key in self._uploads:
            raise Conflict("another upload of this file is in progress; try again later")
        self._uploads[key] = None

    def release(self, imei: str, name: str) -> None:
        self._uploads.pop((imei, name), None)

    async def open_part(self, imei: str, name: str, resume: bool) -> PartWriter:
        """Open the part file of a claimed (imei, name): a new, empty one, or (``resume``) the existing
        one for appending, with the SHA-256 of its prefix recomputed by streaming it from disk."""
        if (imei, name) not in self._uploads:
            raise RuntimeError("open_part needs a claim")
        path = self.part_path(imei, name)
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        hasher = hashlib.sha256()
        size = 0
        if resume and await self._size(path) is not None:
            async with aiofiles.open(path, "rb") as f:
                while chunk := await f.read(WRITE_BUFFER):
                    hasher.update(chunk)
                    size += len(chunk)
            file = await aiofiles.open(path, "r+b")
            try:
                await file.seek(size)
                await file.truncate(size)  # in case the file grew while we hashed it (it cannot: claimed)
            except BaseException:
                await file.close()
                raise
        else:
            file = await aiofiles.open(path, "wb")
        writer = PartWriter(self, imei, name, path, file, size, hasher)
        self._uploads[(imei, name)] = writer
        return writer

    async def commit(self, imei: str, name: str) -> None:
        """Make the (closed, checked) part visible as the complete object: one atomic rename, then an
        fsync of both directories. The caller holds the claim and knows no object exists yet."""
        part = self.part_path(imei, name)
        target = self.object_path(imei, name)
        await aiofiles.os.makedirs(target.parent, exist_ok=True)
        await aiofiles.os.replace(part, target)
        await asyncio.to_thread(_fsync_dir, target.parent)
        await asyncio.to_thread(_fsync_dir, part.parent)

    async def discard_part(self, imei: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self.part_path(imei, name))

    # -- reading ---------------------------------------------------------------------------------

    async def sha256(self, imei: str, name: str) -> str:
        """SHA-256 of the complete object, streamed from disk."""
        hasher = hashlib.sha256()
        async with aiofiles.open(self.object_path(imei, name), "rb") as f:
            while chunk := await f.read(WRITE_BUFFER):
                hasher.update(chunk)
        return hasher.hexdigest()

    async def iter_range(self, imei: str, name: str, start: int, end: int,
                         chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """Bytes ``start <= i < end`` of the complete object, in chunks of at most ``chunk_size``."""
        async with aiofiles.open(self.object_path(imei, name), "rb") as f:
            await f.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = await f.read(min(chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    # -- background work -------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background (putting away an upload whose connection dropped), keeping a
        reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
