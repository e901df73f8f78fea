"""Video objects on any S3-compatible store (aiobotocore), ``--video-url s3://bucket/prefix``.

Complete objects are ``<prefix>/<imei>/<name>``. An upload is a multipart upload of that key, made of
fixed-size parts (``--s3-part-size``, the same on every resume of one upload, as R2 requires); its
upload id and its completed parts are rows in the SQL store (``storage/sql/uploads.py``), so any
process resumes it: the durable offset is the sum of the completed parts, and the bytes after the last
full part are sent again by the device (HEAD says where to start). The object is visible only once
``CompleteMultipartUpload`` made it and it was checked.

SHA-256 with flat memory: the hash state of hashlib cannot be serialised, and S3 cannot read back the
parts of an unfinished multipart upload. So the digest is computed on the fly while parts arrive and,
when an upload pauses, its hash state at the durable offset is kept in this process (bounded LRU):
an upload finished in one request, or resumed on the process that received its start, is checked
before it is completed. An upload resumed on another process does not know the hash of its beginning:
it is completed while marked ``assembled`` in SQL (which keeps it invisible: :meth:`object_size` says
there is none), read back once to hash it (streamed, one chunk in memory), and made visible only when
the digest is known and checked; a mismatch deletes it. Memory per upload: at most two parts (one
filling, one being sent); per download: one chunk.

Credentials, region and endpoint come from the standard AWS configuration chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, profiles, instance roles). Unfinished
uploads untouched for ``--upload-abandon-after-s`` are aborted (:meth:`housekeeping`), including ones
S3 knows but SQL does not (a crash between creating and recording them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import Conflict, Unavailable
from ..models import utcnow, validate_file_name, validate_imei
from .sql.uploads import UploadRows
from .videos_fs import THUMB_SUFFIX, THUMBS_DIR, FsClaim, claim, take_over

log = logging.getLogger("truckx.videos.s3")

#: bytes per read when serving or hashing an object
READ_CHUNK = 256 * 1024
#: hash states of paused uploads kept for a resume on this process
HASH_CACHE_MAX = 1000
#: seconds between two passes over abandoned uploads (at most)
HOUSEKEEPING_EVERY_S = 600.0


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3PartWriter:
    """One upload in progress: full parts go to S3 as they fill (one in flight while the next fills),
    each recorded in SQL once stored; the tail is sent as the last part when the upload finishes."""

    def __init__(self, store: "S3VideoStore", claim: FsClaim, upload_id: str | None, part_size: int,
                 next_part: int, offset: int, hasher: "hashlib._Hash | None") -> None:
        self.store = store
        self.claim = claim
        self.imei, self.name = claim.key
        self.upload_id = upload_id
        self.part_size = part_size
        self.next_part = next_part
        #: bytes accepted (durable, in flight or buffered) / bytes in completed parts
        self.size = offset
        self.durable = offset
        self._hasher = hasher
        self._buffer = bytearray()
        self._inflight: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        #: the whole object when it never needed a multipart upload (smaller than a part)
        self.small_body: bytes | None = None
        #: completed while marked assembled, then hashed from S3 (resumed on another process)
        self.assembled = False
        self._digest: str | None = None
        self.state = "open"
        self.closed = asyncio.Event()
        self.on_preempt: Callable[[], None] | None = None

    @property
    def key(self) -> str:
        return self.store.key(self.imei, self.name)

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        if self.state != "open":
            raise Conflict("this upload is no longer open")
        if self._error is not None:
            raise self._error
        if not chunk:
            return None
        self.size += len(chunk)
        self._buffer += chunk
        if len(self._buffer) < self.part_size:
            return None
        part = bytes(self._buffer[:self.part_size])
        del self._buffer[:self.part_size]
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._send_part(part))
            return None
        return self._after_inflight(part)

    async def _after_inflight(self, part: bytes) -> None:
        assert self._inflight is not None
        await self._inflight
        if self._error is not None:
            raise self._error
        self._inflight = asyncio.ensure_future(self._send_part(part))

    async def _send_part(self, part: bytes) -> None:
        """Hash, upload and record one part (never raises: the error is kept for the next call)."""
        if self._error is not None:
            return
        try:
            if self._hasher is not None:
                await asyncio.to_thread(self._hasher.update, part)
            if self.upload_id is None:
                self.upload_id = await self.store.create_upload(self.imei, self.name, self.part_size)
            number = self.next_part
            etag = await self.store.upload_part(self.key, self.upload_id, number, part)
            await self.store.rows.s3_add_part(self.imei, self.name, number, etag, len(part), utcnow())
            self.next_part += 1
            self.durable += len(part)
        except Exception as exc:
            self._error = exc

    def hexdigest(self) -> str | None:
        if self._digest is not None:
            return self._digest
        return self._hasher.hexdigest() if self._hasher is not None else None

    async def close(self, durable: bool = True, final: bool = False) -> int:
        """Wait for the part in flight. ``final``: send the rest as the last part and learn the digest
        (returns the object's size); else keep the completed parts for a resume and drop the rest
        (returns the durable offset). Raises the error of a failed part (when ``durable``)."""
        if self.state != "open":
            await self.closed.wait()
        else:
            self.state = "closing"
            try:
                if self._inflight is not None:
                    await self._inflight
                if durable and self._error is None:
                    if final:
                        await self._finish()
                    else:
                        self.store.keep_hash(self.imei, self.name, self.upload_id, self.durable, self._hasher)
                self._buffer = bytearray()
            except Exception as exc:
                self._error = self._error or exc
            finally:
                self.state = "closed"
                self.closed.set()
        if durable and self._error is not None:
            raise self._error
        return self.size if final else self.durable

    async def _finish(self) -> None:
        tail = bytes(self._buffer)
        self._buffer = bytearray()
        if self.upload_id is None:
            if self._hasher is not None:
                await asyncio.to_thread(self._hasher.update, tail)
            self.small_body = tail
            return
        if tail or self.next_part == 1:
            await self._send_part(tail)  # hashes it too
            if self._error is not None:
                raise self._error
        if self._hasher is None:
            await self._assemble()

    async def _assemble(self) -> None:
        """Resumed on another process: complete the upload while it is marked assembled (invisible),
        then read it back once to hash it. Not when a complete object is there already (that one is
        kept; the caller compares)."""
        if await self.store.object_size(self.imei, self.name) is not None:
            return
        assert self.upload_id is not None
        await self.store.rows.s3_set_state(self.imei, self.name, "assembled", utcnow())
        await self.store.complete_upload(self.imei, self.name, self.upload_id)
        self.assembled = True
        self._digest = await self.store.hash_object(self.key)


class S3VideoStore:
    def __init__(self, bucket: str, prefix: str, rows: UploadRows, part_size: int = 8 * 1024**2,
                 abandon_after_s: float = 7 * 86400, timeout_s: float = 10.0) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.rows = rows
        #: the part size of new uploads (a resumed one keeps its own)
        self.new_part_size = part_size
        self.abandon_after_s = abandon_after_s
        self.timeout_s = timeout_s
        self._session = get_session()
        self._client: Any = None
        self._client_cm: Any = None
        self._client_lock = asyncio.Lock()
        self._uploads: dict[tuple[str, str], Any] = {}
        self._hashes: collections.OrderedDict[tuple[str, str, str | None, int], "hashlib._Hash"] = (
            collections.OrderedDict())
        self._last_housekeeping = 0.0

    # -- client ----------------------------------------------------------------------------------

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    config = AioConfig(connect_timeout=self.timeout_s, read_timeout=max(30.0, self.timeout_s),
                                       retries={"max_attempts": 3, "mode": "standard"})
                    self._client_cm = self._session.create_client("s3", config=config)
                    self._client = await self._client_cm.__aenter__()
        return self._client

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 call; transport and server failures become :class:`Unavailable` (503), a missing key
        stays a ClientError for the caller."""
        client = await self._s3()
        try:
            return await getattr(client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise
            log.warning("S3 %s failed: %s", method, exc.response.get("Error", {}).get("Code"))
            raise Unavailable("the video store is unavailable; try again") from exc
        except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            log.warning("S3 %s failed: %s", method, type(exc).__name__)
            raise Unavailable("the video store is unavailable; try again") from exc

    async def aclose(self) -> None:
        if self._client_cm is not None:
            with contextlib.suppress(Exception):
                await self._client_cm.__aexit__(None, None, None)
        self._client = self._client_cm = None

    async def ping(self) -> None:
        await self._call("head_bucket")

    def key(self, imei: str, name: str) -> str:
        path = f"{validate_imei(imei)}/{validate_file_name(name)}"
        return f"{self.prefix}/{path}" if self.prefix else path

    # -- state -----------------------------------------------------------------------------------

    async def object_size(self, imei: str, name: str) -> int | None:
        try:
            head = await self._call("head_object", Key=self.key(imei, name))
        except ClientError:
            return None
        if await self.rows.s3_state(imei, name) == "assembled":
            return None  # completed, not yet checked: not visible
        return int(head["ContentLength"])

    async def part_size(self, imei: str, name: str) -> int:
        row = await self.rows.s3_get(imei, name)
        if row is None or row["state"] != "open":
            return 0
        return sum(p["size"] for p in row["parts"])

    def active(self, imei: str, name: str) -> Any:
        return self._uploads.get((imei, name))

    def is_busy(self, imei: str, name: str) -> bool:
        return (imei, name) in self._uploads

    async def take_over(self, imei: str, name: str, timeout_s: float = 10.0) -> None:
        """Cut off this process's upload of (imei, name) still in progress and wait until it is put
        away (see ``FsVideoStore.take_over``)."""
        await take_over(self._uploads, imei, name, timeout_s)

    def claim(self, imei: str, name: str) -> FsClaim:
        return claim(self._uploads, imei, name)

    # -- uploads ---------------------------------------------------------------------------------

    def keep_hash(self, imei: str, name: str, upload_id: str | None, offset: int, hasher: Any) -> None:
        """Remember a paused upload's hash state at its durable offset, for a resume on this process."""
        if hasher is None or upload_id is None:
            return
        self._hashes[(imei, name, upload_id, offset)] = hasher
        while len(self._hashes) > HASH_CACHE_MAX:
            self._hashes.popitem(last=False)

    async def open_part(self, claim: Any, resume: bool) -> S3PartWriter:
        if not claim.held:
            raise RuntimeError("open_part needs a claim that is held")
        imei, name = claim.key
        row = await self.rows.s3_get(imei, name)
        if row is not None and (row["state"] != "open" or not resume):
            await self._drop(imei, name, row)  # a new upload replaces it (or a check a crash cut short)
            row = None
        if row is not None:
            offset = sum(p["size"] for p in row["parts"])
            hasher = self._hashes.pop((imei, name, row["upload_id"], offset), None)
            if hasher is None and offset == 0:
                hasher = hashlib.sha256()
            writer = S3PartWriter(self, claim, row["upload_id"], int(row["part_size"]), len(row["parts"]) + 1,
                                  offset, hasher)
        else:
            writer = S3PartWriter(self, claim, None, self.new_part_size, 1, 0, hashlib.sha256())
        self._uploads[claim.key] = writer
        return writer

    async def create_upload(self, imei: str, name: str, part_size: int) -> str:
        key = self.key(imei, name)
        created = await self._call("create_multipart_upload", Key=key)
        upload_id = created["UploadId"]
        await self.rows.s3_create(imei, name, upload_id, key, part_size, utcnow())
        return str(upload_id)

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        done = await self._call("upload_part", Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        return str(done["ETag"])

    async def complete_upload(self, imei: str, name: str, upload_id: str) -> None:
        row = await self.rows.s3_get(imei, name)
        parts = [{"PartNumber": p["part_number"], "ETag": p["etag"]} for p in (row or {}).get("parts", [])]
        await self._call("complete_multipart_upload", Key=self.key(imei, name), UploadId=upload_id,
                         MultipartUpload={"Parts": parts})

    async def commit(self, imei: str, name: str) -> None:
        """Make the finished upload visible (the caller holds the claim, checked the digest and knows no
        object exists yet)."""
        writer = self._uploads.get((imei, name))
        if not isinstance(writer, S3PartWriter):
            raise RuntimeError("commit needs the upload's writer")
        if writer.small_body is not None:
            await self._call("put_object", Key=writer.key, Body=writer.small_body)
        elif not writer.assembled:
            assert writer.upload_id is not None
            await self.complete_upload(imei, name, writer.upload_id)
        await self.rows.s3_delete(imei, name)

    async def discard_part(self, imei: str, name: str) -> None:
        row = await self.rows.s3_get(imei, name)
        if row is not None:
            await self._drop(imei, name, row)

    async def _drop(self, imei: str, name: str, row: dict[str, Any]) -> None:
        """Forget an unfinished upload: abort it in S3 (or delete the object it assembled) and its rows."""
        try:
            if row["state"] == "assembled":
                await self._call("delete_object", Key=row["object_key"])
            else:
                await self._call("abort_multipart_upload", Key=row["object_key"], UploadId=row["upload_id"])
        except ClientError:
            pass  # gone already
        await self.rows.s3_delete(imei, name, row["upload_id"])

    # -- reading ---------------------------------------------------------------------------------

    async def hash_object(self, key: str) -> str:
        hasher = hashlib.sha256()
        obj = await self._call("get_object", Key=key)
        async with obj["Body"] as body:
            while chunk := await body.read(READ_CHUNK * 4):
                await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()

    async def sha256(self, imei: str, name: str) -> str:
        return await self.hash_object(self.key(imei, name))

    async def iter_range(self, imei: str, name: str, start: int, end: int,
                         chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        if end <= start:
            return
        obj = await self._call("get_object", Key=self.key(imei, name), Range=f"bytes={start}-{end - 1}")
        async with obj["Body"] as body:
            remaining = end - start
            while remaining > 0:
                chunk = await body.read(min(chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    # -- thumbnails and deletion (the video service and retention) -------------------------------

    def thumbnail_key(self, imei: str, name: str) -> str:
        """Beside the videos, where no video reaches: no IMEI (no video directory) starts with a dot."""
        path = f"{THUMBS_DIR}/{validate_imei(imei)}/{validate_file_name(name)}{THUMB_SUFFIX}"
        return f"{self.prefix}/{path}" if self.prefix else path

    async def put_thumbnail(self, imei: str, name: str, data: bytes) -> None:
        await self._call("put_object", Key=self.thumbnail_key(imei, name), Body=data, ContentType="image/jpeg")

    async def get_thumbnail(self, imei: str, name: str) -> bytes | None:
        try:
            obj = await self._call("get_object", Key=self.thumbnail_key(imei, name))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        async with obj["Body"] as body:
            return await body.read()

    async def delete(self, imei: str, name: str) -> bool:
        """Delete the object, its thumbnail and, unless an upload of it runs on this process, its
        unfinished upload; True when something was there."""
        removed = await self.object_size(imei, name) is not None
        await self._call("delete_object", Key=self.key(imei, name))  # S3 deletes are idempotent
        await self._call("delete_object", Key=self.thumbnail_key(imei, name))
        if not self.is_busy(imei, name):
            row = await self.rows.s3_get(imei, name)
            if row is not None:
                await self._drop(imei, name, row)
                removed = True
        return removed

    # -- housekeeping ----------------------------------------------------------------------------

    async def housekeeping(self, force: bool = False) -> int:
        """Abort unfinished uploads untouched for ``abandon_after_s`` (recorded ones nobody holds, and
        ones S3 knows but SQL does not). At most every few minutes unless ``force``; returns how many."""
        loop = asyncio.get_running_loop()
        every = min(HOUSEKEEPING_EVERY_S, max(1.0, self.abandon_after_s / 4))
        if not force and loop.time() - self._last_housekeeping < every:
            return 0
        self._last_housekeeping = loop.time()
        now = utcnow()
        before = now - dt.timedelta(seconds=self.abandon_after_s)
        aborted = 0
        for row in await self.rows.s3_stale(before, now):
            await self._drop(row["imei"], row["name"], row)
            aborted += 1
        listing = await self._call("list_multipart_uploads", **({"Prefix": self.prefix + "/"} if self.prefix else {}))
        uploads = [u for u in listing.get("Uploads", []) if u["Initiated"] < before]
        known = await self.rows.s3_upload_ids([u["UploadId"] for u in uploads])
        for upload in uploads:
            if upload["UploadId"] not in known:
                with contextlib.suppress(ClientError):
                    await self._call("abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        if aborted:
            log.info("aborted %d abandoned uploads", aborted)
        return aborted
