"""Video objects on a directory tree.

Layout::

    <root>/<imei>/<name>              complete objects only
    <root>/.parts/<imei>/<name>.part  uploads in progress (or interrupted, waiting to be resumed)
    <root>/.thumbs/<imei>/<name>.jpg  a video's thumbnail (``media.py``), written once, atomically

A part becomes an object by one atomic rename once it is complete and checked, so a reader never sees a
partial file under ``<root>/<imei>/``. Every path is built only from a validated IMEI and a validated
file name (``models.validate_imei`` / ``models.validate_file_name``: no separators, no ``..``, never
starting with a dot, so ``.parts`` and ``.thumbs`` cannot collide with a device directory), and is checked once more to
stay under the root. Every blocking call (open, read, write, fsync, rename, stat, mkdir, unlink) and
every hash of more than a chunk runs in a worker thread (``aiofiles``, ``asyncio.to_thread`` or an
upload's lanes); memory per upload or download is bounded by a few buffers (``WRITE_BUFFER`` +
``MAX_QUEUED`` / ``READ_CHUNK``), whatever the file size.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import hashlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, BinaryIO, Callable

import aiofiles
import aiofiles.os

from .. import privacy
from ..errors import Conflict, InvalidArgument
from ..models import validate_file_name, validate_imei

log = logging.getLogger("truckx.videos")

PARTS_DIR = ".parts"
PART_SUFFIX = ".part"
THUMBS_DIR = ".thumbs"
THUMB_SUFFIX = ".jpg"
#: bytes gathered from the network before they are hashed and written (one thread hop per buffer)
WRITE_BUFFER = 1024 * 1024
#: bytes an upload may have queued for hashing or writing before it stops reading from the network
MAX_QUEUED = 2 * WRITE_BUFFER
#: bytes read from disk per chunk when serving a file
READ_CHUNK = 256 * 1024
#: an upload asks the kernel to start writing back its part every this many bytes (Linux), so that the
#: fsync that makes it durable finds little left to write; 0 turns it off
WRITEBACK_EVERY = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux only; ``os`` does not expose it), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file beside it, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _hash_file(path: Path) -> tuple["hashlib._Hash", int]:
    """(SHA-256 so far, size) of a file, read in :data:`WRITE_BUFFER` pieces (in a worker thread)."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(WRITE_BUFFER):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size


def _read_at(path: Path, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of ``path`` from ``offset`` (in a worker thread; the file is closed again)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _open_part_sync(path: Path, resume: bool) -> tuple[BinaryIO, int, "hashlib._Hash"]:
    """In a worker thread: the part file open for appending, its size and the hash of its content."""
    privacy.private_dir(path.parent)
    if resume and path.exists():
        hasher, size = _hash_file(path)
        file: BinaryIO = open(path, "r+b")
        try:
            file.seek(size)
            file.truncate(size)  # in case the file grew while we hashed it (it cannot: claimed)
        except BaseException:
            file.close()
            raise
        return file, size, hasher
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, privacy.FILE_MODE)
    return os.fdopen(fd, "wb"), 0, hashlib.sha256()


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


class _Lane:
    """Runs ``work(buffer)`` for the buffers put into it, one at a time and in order, on the loop's
    default executor. A worker thread keeps taking the next buffer as long as there is one, so a busy
    lane costs no round trip through the event loop per buffer; it is started again by the next
    :meth:`put` once it ran dry. ``queued`` counts the bytes put in and not yet done."""

    def __init__(self, work: Callable[[list[bytes]], None]) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._buffers: collections.deque[tuple[list[bytes], int]] = collections.deque()
        self.queued = 0
        #: the first error of ``work``: nothing after it is done
        self.error: BaseException | None = None
        self._active = False
        self._jobs: set[asyncio.Future[None]] = set()
        #: the loop's waiters for room: resolved (from the worker thread) once ``queued`` falls to their
        #: bound, or the lane stops
        self._waiters: list[tuple[asyncio.Future[None], int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def put(self, buffer: list[bytes], nbytes: int) -> None:
        with self._lock:
            if self.error is not None:
                return
            self._buffers.append((buffer, nbytes))
            self.queued += nbytes
            start, self._active = not self._active, True
        if start:
            self._loop = loop = asyncio.get_running_loop()
            job = loop.run_in_executor(None, self._run)
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._buffers:
                    self._active = False
                    self._wake()
                    return
                buffer, nbytes = self._buffers[0]
            try:
                self._work(buffer)
            except BaseException as exc:
                with self._lock:
                    self.error = exc
                    self._buffers.clear()
                    self.queued = 0
                    self._active = False
                    self._wake()
                return
            with self._lock:
                self._buffers.popleft()
                self.queued -= nbytes
                if self._waiters:
                    self._wake(self.queued)

    def _wake(self, queued: int | None = None) -> None:
        """(Under the lock.) Resolve the loop's waiters whose bound ``queued`` meets (all of them when
        None: the lane stopped)."""
        ready = [fut for fut, bound in self._waiters if queued is None or queued <= bound]
        if ready and self._loop is not None:
            self._waiters = [(fut, bound) for fut, bound in self._waiters if fut not in ready]
            self._loop.call_soon_threadsafe(_resolve_all, ready)

    async def wait_below(self, nbytes: int) -> None:
        """Return once at most ``nbytes`` are queued (or the lane stopped on an error)."""
        while True:
            with self._lock:
                if self.queued <= nbytes or not self._active:
                    return
                room = asyncio.get_running_loop().create_future()
                self._waiters.append((room, nbytes))
            await asyncio.wait((room,))

    async def settle(self) -> None:
        """Wait until every buffer put in is done and no worker runs. Never cancels a worker (a
        cancelled waiter leaves it running, and a later call still waits for it)."""
        while self._jobs:
            await asyncio.wait(list(self._jobs))


def _resolve_all(futures: list["asyncio.Future[None]"]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class PartWriter:
    """One upload in progress: appends to its part file and hashes every byte on the way.

    The event loop only gathers the body's chunks into buffers of about :data:`WRITE_BUFFER` bytes;
    each buffer is hashed on one lane and written to the part on another (:class:`_Lane`: worker
    threads that keep going while buffers are queued, hashlib and file writes release the GIL), so
    hashing, writing and the loop reading the next bytes from the network all overlap. :meth:`write`
    awaits only when a lane lags :data:`MAX_QUEUED` bytes behind, so a writer holds at most about
    ``MAX_QUEUED + WRITE_BUFFER`` bytes of the body whatever the file size. ``size`` counts every
    accepted byte (gathered, queued or written); :meth:`close` makes them durable.
    """

    def __init__(self, claim: "FsClaim", path: Path, file: BinaryIO, size: int, hasher: "hashlib._Hash") -> None:
        self.claim = claim
        self.imei, self.name = claim.key
        self.path = path
        self.size = size
        self._file = file
        self._hasher = hasher
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._hashing = _Lane(self._hash_sync)
        self._writing = _Lane(self._write_sync)
        #: bytes written to the file (by the writing lane) and handed to the kernel's writeback
        self._written = size
        self._writeback_from = size
        #: "open" while bytes may arrive, "closing" while being put away, "closed" afterwards
        self.state = "open"
        self.closed = asyncio.Event()
        #: set by the request that streams into this writer: cuts that request's connection off
        self.on_preempt: Callable[[], None] | None = None

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        """Take ``chunk``. Returns None, or an awaitable to await before the next write when hashing or
        writing lags behind (backpressure). :class:`Conflict` once the writer is closing; the error of
        a failed write to the part once it happened."""
        if self.state != "open":
            raise Conflict("this upload is no longer open")
        self._raise_lane_error()
        if not chunk:
            return None
        self.size += len(chunk)
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes < WRITE_BUFFER:
            return None
        self._send_pending()
        if self._hashing.queued > MAX_QUEUED or self._writing.queued > MAX_QUEUED:
            return self._catch_up()
        return None

    def _send_pending(self) -> None:
        if self._pending:
            buffer, nbytes = self._pending, self._pending_bytes
            self._pending, self._pending_bytes = [], 0
            self._hashing.put(buffer, nbytes)
            self._writing.put(buffer, nbytes)

    async def _catch_up(self) -> None:
        await self._hashing.wait_below(MAX_QUEUED)
        await self._writing.wait_below(MAX_QUEUED)
        self._raise_lane_error()

    def _raise_lane_error(self) -> None:
        error = self._writing.error or self._hashing.error
        if error is not None:
            raise error

    def _hash_sync(self, buffer: list[bytes]) -> None:
        for chunk in buffer:
            self._hasher.update(chunk)

    def _write_sync(self, buffer: list[bytes]) -> None:
        """In a worker thread (the writing lane): append ``buffer`` to the part."""
        file = self._file
        for chunk in buffer:
            file.write(chunk)
            self._written += len(chunk)
        if _sync_file_range is not None and self._written - self._writeback_from >= WRITEBACK_EVERY > 0:
            # Start the kernel's writeback of what was written so far (it returns at once): the fsync
            # at the end then has little left to do, and an upload does not pile up dirty pages.
            file.flush()
            _sync_file_range(file.fileno(), self._writeback_from, self._written - self._writeback_from,
                             _SYNC_FILE_RANGE_WRITE)
            self._writeback_from = self._written

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    async def close(self, durable: bool = True, final: bool = False) -> int:
        """Write what is gathered, fsync (when ``durable``) and close the part file; returns its size,
        the durable offset a resumed upload continues from (``final`` changes nothing here: every byte
        of a part file is durable). Idempotent; a concurrent call waits for the first one. Raises the
        error of a failed write to the part (when ``durable``)."""
        if self.state != "open":
            await self.closed.wait()
        else:
            self.state = "closing"  # from here on write() refuses
            try:
                if durable:
                    self._send_pending()
                else:
                    self._pending, self._pending_bytes = [], 0
                await self._hashing.settle()
                await self._writing.settle()
                if durable and self._writing.error is None:
                    await asyncio.to_thread(self._sync)
            finally:
                try:
                    await asyncio.to_thread(self._file.close)
                finally:
                    self.state = "closed"
                    self.closed.set()
        if durable:
            self._raise_lane_error()
        return self.size


class FsClaim:
    """The right to write (imei, name) (see :class:`~truckx_server.storage.base.UploadClaim`)."""

    def __init__(self, uploads: dict[tuple[str, str], PartWriter | None], key: tuple[str, str]) -> None:
        self._uploads = uploads
        self.key = key
        self.held = True
        self._handed_over = False

    def hand_over(self) -> None:
        """The writer now owns the claim: leaving the current ``with`` block keeps it."""
        self._handed_over = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._uploads.pop(self.key, None)

    def __enter__(self) -> "FsClaim":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handed_over:
            self._handed_over = False
        else:
            self.release()


#: the uploads this process is receiving, by (imei, name): None while claimed, then its part writer
Uploads = dict[tuple[str, str], Any]


def claim(uploads: Uploads, imei: str, name: str) -> FsClaim:
    """Reserve (imei, name) in ``uploads`` for one upload; :class:`Conflict` while another one runs
    (the file store and the S3 store keep their uploads in progress alike)."""
    key = (validate_imei(imei), validate_file_name(name))
    if key in uploads:
        raise Conflict("another upload of this file is in progress; try again later")
    uploads[key] = None
    return FsClaim(uploads, key)


async def take_over(uploads: Uploads, imei: str, name: str, timeout_s: float) -> None:
    """Cut off the upload of (imei, name) in ``uploads`` still open (its writer's ``on_preempt``) and
    wait until it is put away; :class:`Conflict` after ``timeout_s``."""
    key = (validate_imei(imei), validate_file_name(name))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    preempted = False
    while key in uploads:
        writer = uploads[key]
        if not preempted and writer is not None and writer.state == "open" and writer.on_preempt:
            preempted = True
            writer.on_preempt()
        if loop.time() > deadline:
            raise Conflict("another upload of this file is in progress; try again later")
        await asyncio.sleep(0.01)


class FsVideoStore:
    def __init__(self, root: Path) -> None:
        # resolved once at start-up, so that every path below is compared against a canonical root
        self.root = Path(os.path.realpath(root))
        self.parts_root = self.root / PARTS_DIR
        #: uploads in progress, one per (imei, name): a second concurrent upload is refused
        self._uploads: dict[tuple[str, str], PartWriter | None] = {}

    async def ping(self) -> None:
        await asyncio.to_thread(privacy.private_dir, self.root)

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

    def thumbnail_path(self, imei: str, name: str) -> Path:
        path = self._under_root(THUMBS_DIR, validate_imei(imei), validate_file_name(name) + THUMB_SUFFIX)
        if path.parent.parent != self.root / THUMBS_DIR:
            raise InvalidArgument("path escapes the thumbnails directory")
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
        """The writer of an upload of (imei, name) in progress, if any."""
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
        await take_over(self._uploads, imei, name, timeout_s)

    def claim(self, imei: str, name: str) -> "FsClaim":
        """Reserve (imei, name) for one upload; :class:`Conflict` while another one runs."""
        return claim(self._uploads, imei, name)

    async def open_part(self, claim: "FsClaim", resume: bool) -> PartWriter:
        """Open the part file of a claimed upload: a new, empty one, or (``resume``) the existing one for
        appending, with the SHA-256 of its prefix recomputed by streaming it from disk."""
        if not claim.held:
            raise RuntimeError("open_part needs a claim that is held")
        path = self.part_path(*claim.key)
        file, size, hasher = await asyncio.to_thread(_open_part_sync, path, resume)
        writer = PartWriter(claim, path, file, size, hasher)
        self._uploads[claim.key] = writer
        return writer

    async def commit(self, imei: str, name: str) -> None:
        """Make the (closed, checked) part visible as the complete object: one atomic rename, then an
        fsync of both directories. The caller holds the claim and knows no object exists yet."""
        part = self.part_path(imei, name)
        target = self.object_path(imei, name)
        await asyncio.to_thread(privacy.private_dir, target.parent)
        await aiofiles.os.replace(part, target)
        await asyncio.to_thread(_fsync_dir, target.parent)
        await asyncio.to_thread(_fsync_dir, part.parent)

    async def discard_part(self, imei: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self.part_path(imei, name))

    async def delete(self, imei: str, name: str) -> bool:
        """Unlink the complete object and, unless an upload of it runs on this process, its part; the
        unlink of the object is made durable (fsync of its directory). True when a file went."""
        target = self.object_path(imei, name)
        removed = False
        try:
            await aiofiles.os.unlink(target)
            removed = True
            await asyncio.to_thread(_fsync_dir, target.parent)
        except FileNotFoundError:
            pass
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self.thumbnail_path(imei, name))  # the video's thumbnail goes with it
        if not self.is_busy(imei, name):
            try:
                await aiofiles.os.unlink(self.part_path(imei, name))
                removed = True
            except FileNotFoundError:
                pass
        return removed

    # -- reading ---------------------------------------------------------------------------------

    async def sha256(self, imei: str, name: str) -> str:
        """SHA-256 of the complete object, streamed from disk."""
        hasher, _size = await asyncio.to_thread(_hash_file, self.object_path(imei, name))
        return hasher.hexdigest()

    async def iter_range(self, imei: str, name: str, start: int, end: int,
                         chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """Bytes ``start <= i < end`` of the complete object, in chunks of at most ``chunk_size``."""
        # each piece is opened, read and closed by one worker-thread call: a reader cancelled or dropped
        # half-way (a download cut off, a probe stopped at shutdown) leaves no open file behind
        path = self.object_path(imei, name)
        await asyncio.to_thread(os.stat, path)  # FileNotFoundError before anything is sent
        position = start
        while position < end:
            chunk = await asyncio.to_thread(_read_at, path, position, min(chunk_size, end - position))
            if not chunk:
                break
            position += len(chunk)
            yield chunk

    # -- thumbnails ------------------------------------------------------------------------------

    async def put_thumbnail(self, imei: str, name: str, data: bytes) -> None:
        await asyncio.to_thread(_write_atomically, self.thumbnail_path(imei, name), data)

    async def get_thumbnail(self, imei: str, name: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.thumbnail_path(imei, name).read_bytes)
        except FileNotFoundError:
            return None

    async def housekeeping(self, force: bool = False) -> int:
        """Nothing to do: an interrupted upload's part waits on disk for its resume."""
        return 0

    async def aclose(self) -> None:
        """Nothing to close: every upload's writer is closed by its owner (``domain/videos.py``)."""
