"""Videos: a device's streamed, resumable upload (``PUT``, ``HEAD``/``PATCH`` resume), the video index,
and the admin's listing and downloads.

The video store decides what is complete (an object under ``<imei>/<name>``); the SQL index mirrors it
for listings and for the alarms' per-file ``arrived``, and is repaired from the store when a crash left
it behind. Once a video is complete its metadata and thumbnail are read from it in the background
(``media.py``: a bounded child process reading through the store), recorded in the index, and announced
with a second ``video`` event; what was not read (a restart, a full queue, a store error) is caught up by
:meth:`VideoService.sweep`, which the housekeeping runs.

One upload of a file runs at a time: its claim (``storage.base.UploadClaim``) is taken in
:meth:`VideoService.begin` and released when the upload ends, by finishing, pausing or abandoning it.

Disabling a device or rotating its secret (heard on the bus) cuts its uploads in progress on this
process off at their durable offset: the request's connection is dropped, the part is kept for a resume
once the device may upload again, and an upload whose last bytes had already arrived is refused
(403/401) instead of being made visible.

With other processes (a cluster bus), the claim is also a row in SQL with a lease (:class:`UploadLeases`):
a newer request of the device for the same file on another process asks the holder, over the bus, to
cut its upload off, and takes the claim once it is put away (or once the holder is dead or its lease
ran out), as a newer request on the same process does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from typing import Any, Callable, Iterator

from .. import paging
from ..bus import Bus
from ..errors import Conflict, Forbidden, InvalidArgument, NotFound, PayloadTooLarge, TruckxError, Unauthorized
from ..media import MediaInfo, MediaProber, ProbeSkipped
from ..metrics import Metrics
from ..models import (AuditEntry, OutboxEvent, format_time, imei_list, parse_bool, time_arg, utcnow, validate_file_name,
                      validate_imei)
from ..storage.base import PartWriter, UploadClaim, VideoStore
from ..storage.sql.devices import DeviceRows
from ..storage.sql.uploads import UploadRows
from ..storage.sql.videos import VideoRows
from ..vocab import DEVICE_DISABLED, DEVICE_ROTATED

log = logging.getLogger("truckx.videos")

#: an upload's claim across processes lasts this long unless renewed (every housekeeping pass renews the
#: claims of the uploads running here); a newer request waits at most TAKE_OVER_S for the holder to let go
LEASE_S = 30.0
TAKE_OVER_S = 10.0


class UploadLeases:
    """Claims of uploads shared by the processes of a cluster: one row per (imei, name) naming the
    process receiving it, with a lease."""

    def __init__(self, rows: UploadRows, bus: Bus, lease_s: float = LEASE_S, timeout_s: float = TAKE_OVER_S) -> None:
        self.rows = rows
        self.bus = bus
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        #: (imei, name) -> token of the claims held here
        self.held: dict[tuple[str, str], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _live(self) -> set[str] | None:
        """The live processes, None when the bus cannot say (then only leases count)."""
        try:
            return {n["node_id"] for n in await self.bus.nodes()}
        except Exception:
            return None

    async def _until_free(self, imei: str, name: str, attempt: Callable[[set[str] | None], Any]) -> Any:
        """Run ``attempt(live)`` until it returns None (done) or a holder; ask each holder once to cut its
        upload off; :class:`Conflict` after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        asked: str | None = None
        while True:
            holder = await attempt(await self._live())
            if holder is None:
                return
            if holder != asked:
                self.bus.upload_preempt(holder, imei, name)
                asked = holder
            if loop.time() > deadline:
                raise Conflict("another upload of this file is in progress; try again later")
            await asyncio.sleep(0.05)

    async def acquire(self, imei: str, name: str) -> str:
        """Take the claim of (imei, name) for this process; returns its token."""
        token = str(uuid.uuid4())

        async def attempt(live: set[str] | None) -> str | None:
            return await self.rows.claim(imei, name, self.bus.node_id, token, utcnow(), self.lease_s, live)
        await self._until_free(imei, name, attempt)
        self.held[(imei, name)] = token
        return token

    async def wait_free(self, imei: str, name: str) -> None:
        """Return once no other process holds the claim of (imei, name) (cutting its upload off)."""
        async def attempt(live: set[str] | None) -> str | None:
            holder = await self.rows.holder(imei, name, utcnow(), live)
            return None if holder == self.bus.node_id else holder
        await self._until_free(imei, name, attempt)

    def release(self, imei: str, name: str, token: str) -> None:
        if self.held.get((imei, name)) == token:
            del self.held[(imei, name)]
        task = asyncio.get_running_loop().create_task(self._release(imei, name, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, imei: str, name: str, token: str) -> None:
        try:
            await self.rows.release(imei, name, token)
        except Exception as exc:  # the lease runs out by itself
            log.warning("could not release the claim of %s/%s: %s", imei, name, type(exc).__name__)

    async def renew(self) -> None:
        if self.held:
            await self.rows.renew(self.bus.node_id, list(self.held.values()),
                                  utcnow() + dt.timedelta(seconds=self.lease_s))

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class LeasedClaim:
    """A store's claim plus its lease across processes: releasing one releases both."""

    def __init__(self, inner: Any, on_release: Callable[[], None]) -> None:
        self.inner = inner
        self._on_release = on_release
        self._handed_over = False
        self._released = False

    @property
    def key(self) -> tuple[str, str]:
        return self.inner.key  # type: ignore[no-any-return]

    @property
    def held(self) -> bool:
        return bool(self.inner.held)

    def hand_over(self) -> None:
        self._handed_over = True
        self.inner.hand_over()

    def release(self) -> None:
        self.inner.release()
        if not self._released:
            self._released = True
            self._on_release()

    def __enter__(self) -> "LeasedClaim":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handed_over:
            self._handed_over = False
            self.inner.__exit__(*exc)
        else:
            self.release()


#: bytes per piece when a video is read for its metadata (``media.READ_MAX`` bounds a request)
PROBE_READ_CHUNK = 256 * 1024
#: videos scheduled per sweep for reading (when nothing is waiting)
SWEEP_BATCH = 20


def video_json(row: dict[str, Any]) -> dict[str, Any]:
    """A video as listed (``alarm_ids`` when the row was read with them: listings, not events)."""
    out = {"imei": row["imei"], "name": row["name"], "size": row["size"], "sha256": row["sha256"],
           "complete": row["complete"], "uploaded_at": format_time(row["uploaded_at"]),
           "duration_s": row.get("duration_s"), "width": row.get("width"), "height": row.get("height"),
           "codec": row.get("codec"), "thumbnail": bool(row.get("thumbnail"))}
    if "alarm_ids" in row:
        out["alarm_ids"] = row["alarm_ids"]
    return out


def announce_uploaded(row: dict[str, Any]) -> OutboxEvent:
    """The webhook event of a completed upload (written with the index row that makes it complete)."""
    return OutboxEvent("video.uploaded", video_json({**row, "complete": bool(row["complete"])}),
                       row.get("uploaded_at") or utcnow())


def _cursor_time(value: Any) -> Any:
    return None if value is None else paging.time(value)


class VideoService:
    def __init__(self, store: VideoStore, rows: VideoRows, devices: DeviceRows, bus: Bus, metrics: Metrics,
                 max_bytes: int, prober: MediaProber, uploads: UploadRows | None = None) -> None:
        self.store = store
        self.rows = rows
        self.devices = devices
        self.bus = bus
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.prober = prober
        #: uploads being put away after their connection dropped
        self._tasks: set[asyncio.Task[Any]] = set()
        #: this process's uploads in progress by IMEI, and why one was cut off (device disabled, rotated)
        self._uploads: dict[str, set[PartWriter]] = {}
        self._cut: dict[PartWriter, TruckxError] = {}
        bus.on_invalidate(self._invalidated)
        #: videos being read for their metadata (bounded by the prober's queue), by (imei, name)
        self._probes: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: where the next sweep continues (it goes round the unread videos, so one that keeps failing
        #: does not hold up the others)
        self._sweep_after: tuple[str, str] | None = None
        #: claims across processes (with a cluster bus only)
        self.leases = UploadLeases(uploads, bus) if uploads is not None and bus.clustered else None
        bus.on_upload_preempt(self._preempted)

    async def aclose(self) -> None:
        """Shutdown: stop reading metadata, finish putting away interrupted uploads, close the store."""
        self.prober.close()
        for task in list(self._probes.values()):
            task.cancel()
        if self._probes:
            await asyncio.gather(*list(self._probes.values()), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.leases is not None:
            await self.leases.aclose()
        await self.store.aclose()

    async def housekeeping(self) -> None:
        """Renew the claims of the uploads running here; the store's own clean-up."""
        if self.leases is not None:
            await self.leases.renew()
        await self.store.housekeeping()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _preempted(self, imei: str, name: str) -> None:
        """Another process took over the upload of (imei, name): cut this process's one off."""
        self._spawn(self._take_over_here(imei, name))

    async def _take_over_here(self, imei: str, name: str) -> None:
        try:
            await self.store.take_over(imei, name)
        except Exception as exc:
            log.warning("could not cut off the upload of %s/%s: %s", imei, name, type(exc).__name__)

    async def _claim(self, imei: str, name: str) -> UploadClaim:
        """The store's claim of (imei, name), and in a cluster its lease."""
        token = await self.leases.acquire(imei, name) if self.leases is not None else None
        try:
            claim = self.store.claim(imei, name)
        except BaseException:
            if token is not None and self.leases is not None:
                self.leases.release(imei, name, token)
            raise
        if token is None or self.leases is None:
            return claim
        leases = self.leases
        return LeasedClaim(claim, lambda: leases.release(imei, name, token))

    # -- uploads ---------------------------------------------------------------------------------

    def _invalidated(self, kind: str, imei: str) -> None:
        """The device was disabled or its secret rotated (on any process): cut its uploads off here."""
        if kind == DEVICE_DISABLED:
            reason: TruckxError = Forbidden("the device was disabled during the upload; what arrived is kept "
                                            "for a resume")
        elif kind == DEVICE_ROTATED:
            reason = Unauthorized("the device secret was rotated during the upload; log in again and resume")
        else:
            return
        for writer in list(self._uploads.get(imei, ())):
            self._cut[writer] = reason
            if writer.on_preempt is not None:
                writer.on_preempt()  # drops the request's connection; the part is put away

    @contextlib.contextmanager
    def _ending(self, writer: PartWriter) -> Iterator[None]:
        """Hold ``writer``'s claim for the block; afterwards the upload is over on this process."""
        try:
            with writer.claim:
                yield
        finally:
            mine = self._uploads.get(writer.imei)
            if mine is not None:
                mine.discard(writer)
                if not mine:
                    del self._uploads[writer.imei]
            self._cut.pop(writer, None)

    def _check_not_cut(self, writer: PartWriter) -> None:
        reason = self._cut.get(writer)
        if reason is not None:
            raise reason

    async def upload_state(self, imei: str, name: str) -> tuple[int, bool]:
        """``(offset, complete)`` for HEAD: the complete object's size, or the durable size of a part."""
        name = validate_file_name(name)
        await self.store.take_over(imei, name)  # the device asks because it believes the upload died
        if self.leases is not None:
            await self.leases.wait_free(imei, name)  # ... on whichever process
        size = await self.store.object_size(imei, name)
        if size is not None:
            return size, True
        return await self.store.part_size(imei, name), False

    async def begin(self, imei: str, name: str, offset: int | None, content_length: int | None,
                    on_preempt: Callable[[], None] | None = None) -> PartWriter:
        """Start a PUT (``offset`` None: a new part, replacing any pending one) or a PATCH appending at
        ``offset``. Refuses a body that cannot fit (413) before any byte is read, a second concurrent
        upload of the same file (409) and a PATCH at the wrong offset (409, with the right one).
        ``on_preempt`` cuts the request off (a newer request for the file, the device disabled)."""
        name = validate_file_name(name)
        if content_length is not None and offset is None and content_length > self.max_bytes:
            self.metrics.uploads.labels("too_large").inc()
            raise PayloadTooLarge(f"a video may have at most {self.max_bytes} bytes")
        await self.store.take_over(imei, name)
        with await self._claim(imei, name) as claim:  # released here unless a writer takes it over
            if offset is not None:
                existing = await self.store.object_size(imei, name)
                if existing is not None:
                    raise Conflict("this video is complete already", offset=existing)
                current = await self.store.part_size(imei, name)
                if offset != current:  # first: a wrong offset is answered with the right one, whatever the size
                    raise Conflict(f"Upload-Offset is {offset}, but {current} bytes are stored", offset=current)
                if content_length is not None and offset + content_length > self.max_bytes:
                    self.metrics.uploads.labels("too_large").inc()
                    raise PayloadTooLarge(f"a video may have at most {self.max_bytes} bytes")
            writer = await self.store.open_part(claim, resume=offset is not None)
            writer.on_preempt = on_preempt
            self._uploads.setdefault(imei, set()).add(writer)
            claim.hand_over()
            return writer

    async def finish(self, writer: PartWriter, expected_sha256: str | None) -> tuple[dict[str, Any], int]:
        """The body is complete: check it, then make it visible. ``({name, size, sha256}, status)``:
        201 created, 200 the same content was there already; 409 a different content is there, 400 the
        checksum does not match (in both cases nothing of this upload is kept)."""
        imei, name = writer.imei, writer.name
        with self._ending(writer):
            size = await writer.close(final=True)
            if writer in self._cut:  # all its bytes had arrived, but the device may no longer upload
                await self._keep(imei, name, size)
                self._check_not_cut(writer)
            digest = writer.hexdigest()  # None only when a complete object is there already (S3)
            body = {"name": name, "size": size, "sha256": digest}
            if expected_sha256 is not None and digest is not None and digest != expected_sha256:
                await self._drop_part(imei, name)
                self.metrics.uploads.labels("checksum_mismatch").inc()
                raise InvalidArgument("the body does not match X-Content-SHA256", sha256=digest)
            existing_size = await self.store.object_size(imei, name)
            if existing_size is not None:
                await self.store.discard_part(imei, name)
                existing = await self._indexed(imei, name, existing_size)
                same = digest if digest is not None else expected_sha256
                if existing["sha256"] == same and existing_size == size:
                    self.metrics.uploads.labels("duplicate").inc()
                    return {**body, "sha256": existing["sha256"]}, 200
                self.metrics.uploads.labels("conflict").inc()
                raise Conflict("a different video with this name exists already")
            if writer in self._cut:
                await self._keep(imei, name, size)
                self._check_not_cut(writer)
            if digest is None:  # not reachable: a store learns the digest unless an object exists
                await self._drop_part(imei, name)
                raise Conflict("the upload could not be checked; send it again")
            await self.store.commit(imei, name)
            now = utcnow()
            await self.rows.upsert(imei, name, size, digest, True, now, announce_uploaded)
            self.metrics.uploads.labels("created").inc()
            self.bus.publish("video", {"imei": imei, "video": video_json({
                **body, "imei": imei, "complete": True, "uploaded_at": now})})
            self.schedule_probe(imei, name, size)
            return body, 201

    async def pause(self, writer: PartWriter, refuse_if_cut: bool = True) -> int:
        """Keep the part (a PATCH without ``Upload-Complete: ?1``, or a dropped connection): make it
        durable, index it as incomplete and return the offset to continue from. When the device was
        disabled or rotated meanwhile, the part is kept all the same, and (``refuse_if_cut``) the reason
        is raised."""
        with self._ending(writer):
            size = await writer.close()
            await self._keep(writer.imei, writer.name, size)
            if refuse_if_cut:
                self._check_not_cut(writer)
            return size

    async def _keep(self, imei: str, name: str, size: int) -> None:
        if await self.store.object_size(imei, name) is not None:
            # a re-upload of a complete video: nothing to resume, the next PUT compares again
            await self.store.discard_part(imei, name)
            return
        await self.rows.upsert(imei, name, size, None, False, None)

    def put_away(self, writer: PartWriter) -> None:
        """The request ended without finishing its upload (connection dropped): keep the part, durably,
        for a resume, in the background."""
        self._spawn(self._put_away(writer))

    async def _put_away(self, writer: PartWriter) -> None:
        try:
            await self.pause(writer, refuse_if_cut=False)
        except Exception as exc:
            log.warning("could not put away the upload of %s/%s: %s", writer.imei, writer.name, type(exc).__name__)

    async def abandon(self, writer: PartWriter) -> None:
        """The body went past the size limit while streaming: keep nothing of it."""
        self.metrics.uploads.labels("too_large").inc()
        with self._ending(writer):
            await writer.close(durable=False)
            await self._drop_part(writer.imei, writer.name)

    async def _drop_part(self, imei: str, name: str) -> None:
        await self.store.discard_part(imei, name)
        if await self.store.object_size(imei, name) is None:
            await self.rows.delete(imei, name)  # an incomplete index row, if any

    async def _indexed(self, imei: str, name: str, size: int) -> dict[str, Any]:
        """The index row of a complete object; rebuilt from the store when missing or stale."""
        row = await self.rows.get(imei, name)
        if row is None or not row["complete"] or not row["sha256"] or row["size"] != size:
            digest = await self.store.sha256(imei, name)
            uploaded = (row or {}).get("uploaded_at") or utcnow()
            await self.rows.upsert(imei, name, size, digest, True, uploaded)
            row = {"imei": imei, "name": name, "size": size, "sha256": digest, "complete": True,
                   "uploaded_at": uploaded}
        return row

    # -- metadata and thumbnails -----------------------------------------------------------------

    def schedule_probe(self, imei: str, name: str, size: int) -> bool:
        """Read a complete video's metadata and thumbnail in the background; False when it is being read
        already, or too many are waiting (the sweep comes back to it)."""
        key = (imei, name)
        if not self.prober.enabled or self.prober.closed or key in self._probes:
            return False
        if len(self._probes) >= self.prober.queue_limit:
            return False
        task = asyncio.get_running_loop().create_task(self._probe(imei, name, size), name="video-probe")
        self._probes[key] = task
        task.add_done_callback(lambda _t: self._probes.pop(key, None))
        return True

    @property
    def probes_pending(self) -> int:
        return len(self._probes)

    async def _probe(self, imei: str, name: str, size: int) -> None:
        try:
            info = await self.prober.probe(
                size, lambda start, end: self.store.iter_range(imei, name, start, end, PROBE_READ_CHUNK))
        except ProbeSkipped:
            return  # the sweep comes back to it
        except Exception as exc:  # the store failed: nothing is known about the file, try again later
            log.warning("could not read %s/%s for its metadata: %s", imei, name, type(exc).__name__)
            return
        try:
            await self._record(imei, name, info)
        except Exception as exc:
            log.warning("could not record the metadata of %s/%s: %s", imei, name, type(exc).__name__)

    async def _record(self, imei: str, name: str, info: MediaInfo) -> None:
        if info.thumbnail:
            await self.store.put_thumbnail(imei, name, info.thumbnail)
        if not await self.rows.set_media(imei, name, duration_s=info.duration_s, width=info.width,
                                         height=info.height, codec=info.codec, thumbnail=bool(info.thumbnail),
                                         probed_at=utcnow()):
            return
        row = await self.rows.get(imei, name)
        if row is not None:
            row["complete"], row["thumbnail"] = bool(row["complete"]), bool(row["thumbnail"])
            self.bus.publish("video", {"imei": imei, "video": video_json(row)})

    async def sweep(self) -> int:
        """Schedule complete videos whose metadata was never read (a restart, a full queue, a store
        error); returns how many. Does nothing while probes are waiting."""
        if not self.prober.enabled or self.prober.closed or self._probes:
            return 0
        found = await self.rows.unprobed(SWEEP_BATCH, self._sweep_after)
        if not found and self._sweep_after is not None:
            self._sweep_after = None  # round again from the start next time
            return 0
        scheduled = 0
        for imei, name, size in found:
            scheduled += self.schedule_probe(imei, name, size)
            self._sweep_after = (imei, name)
        return scheduled

    async def thumbnail(self, imei: str, name: str) -> bytes:
        """The JPEG thumbnail of a video; 404 until it is made, and for a file that is not a video."""
        imei, name = validate_imei(imei), validate_file_name(name)
        row = await self.rows.get(imei, name)
        data = await self.store.get_thumbnail(imei, name) if row is not None and row["thumbnail"] else None
        if data is None:
            raise NotFound(f"no thumbnail of {name} for device {imei}")
        return data

    # -- admin -----------------------------------------------------------------------------------

    async def find(self, imei: str, name: str) -> dict[str, Any]:
        """A complete video for download: ``{name, size, sha256, uploaded_at}``; 404 otherwise."""
        imei, name = validate_imei(imei), validate_file_name(name)
        size = await self.store.object_size(imei, name)
        if size is None:
            raise NotFound(f"no complete video {name} for device {imei}")
        row = await self._indexed(imei, name, size)
        return {"name": name, "size": size, "sha256": row["sha256"], "uploaded_at": row["uploaded_at"]}

    async def delete(self, imei: str, name: str, force: bool, actor: str) -> dict[str, Any]:
        """An admin deletes a video: its object, any part and its index row (with its audit entry, in the
        row's transaction). Evidence (named by an alarm that is not cleared) is refused (409, with those
        ``alarm_ids``) unless ``force``; so is a video whose upload runs on this process (409: the device
        is sending it, delete it once that ends). 404 when there is nothing of it. Returns what was
        deleted."""
        imei, name = validate_imei(imei), validate_file_name(name)
        if self.store.is_busy(imei, name):
            raise Conflict("an upload of this video is in progress; delete it once the upload has ended")
        row = await self.rows.get(imei, name)
        size = await self.store.object_size(imei, name)
        part = await self.store.part_size(imei, name)
        if row is None and size is None and not part:
            raise NotFound(f"no video {name} for device {imei}")
        evidence = await self.rows.evidence(imei, name)
        if evidence and not force:
            raise Conflict("this video is evidence: alarms that are not cleared name it; clear them first, or "
                           "delete with force=true", alarm_ids=evidence)
        # the bytes first: a crash in between leaves an index row without an object, which lists as
        # gone on download (404) and is dropped by the next delete; never bytes without a row
        await self.store.delete(imei, name)
        deleted = {"imei": imei, "name": name, "size": size if size is not None else part,
                   "complete": size is not None, "evidence": evidence, "forced": bool(evidence)}
        await self.rows.delete(imei, name, AuditEntry(actor, "video.delete", f"{imei}/{name}", deleted))
        return deleted

    def read(self, imei: str, name: str, start: int, end: int, chunk_size: int) -> Any:
        """The bytes ``start <= i < end`` of a complete video, as an async iterator of chunks."""
        return self.store.iter_range(imei, name, start, end, chunk_size)

    async def list(self, imei: str, limit: int, cursor: str | None) -> dict[str, Any]:
        imei = validate_imei(imei)
        after = paging.decode(cursor, paging.file_name)
        if after is None and await self.devices.get(imei) is None:
            raise NotFound(f"device {imei} is not registered")
        page = await paging.keyset(lambda n: self.rows.page(imei, n, after[0] if after else None), limit,
                                   lambda r: [r["name"]])
        return page.json(video_json)

    async def list_all(self, *, imeis: list[str], since: str | None, until: str | None, complete: str | None,
                       limit: int, cursor: str | None) -> dict[str, Any]:
        """Every device's videos, newest upload first (incomplete ones last), with filters."""
        after = paging.decode(cursor, _cursor_time, paging.text, paging.file_name)
        filters = dict(imeis=imei_list(imeis), since=time_arg(since, "since"), until=time_arg(until, "until"),
                       complete=parse_bool(complete, "complete"), after=tuple(after) if after else None)
        page = await paging.keyset(lambda n: self.rows.page_all(**filters, limit=n), limit,
                                   lambda r: [format_time(r["uploaded_at"]), r["imei"], r["name"]])
        return page.json(video_json)
