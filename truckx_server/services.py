"""Builds every store and hub once at start-up and closes them in order.

Handlers reach everything through ``self.application.settings["services"]``; there are no module-level
singletons. The few operations that span several stores (device login, registering devices, alarms,
commands) live here so that handlers stay thin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
from typing import Any, Sequence

from . import auth, migrate
from .admin_service import AdminService
from .config import Settings
from .errors import (Conflict, Forbidden, InvalidArgument, NotFound, PayloadTooLarge, RateLimited, Unauthorized)
from .hub import EventBus, Hub, command_json
from .ingest import LocationBatcher
from .metrics import Metrics
from .models import (AlarmIn, LocationPoint, alarm_json, format_time, parse_command, utcnow, validate_file_name,
                     validate_imei)
from .ratelimit import RateLimiter
from .storage.base import LocationStore
from .storage.sql import SqlStore
from .storage.videos_fs import FsVideoStore, PartWriter

log = logging.getLogger("truckx.services")


def make_location_store(url: str, settings: Settings) -> LocationStore:
    if url.startswith("sqlite:"):
        from .storage.locations_sqlite import SqliteLocationStore
        return SqliteLocationStore(url, timeout_s=settings.store_timeout_s)
    if url.startswith("mongodb:") or url.startswith("mongodb+srv:"):
        from .storage.locations_mongo import MongoLocationStore
        return MongoLocationStore(url, pool_size=settings.sql_pool_size, timeout_s=settings.store_timeout_s)
    raise ValueError(f"unsupported locations URL scheme in {url.split(':', 1)[0]!r}")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.jwt_secret = settings.jwt_secret or auth.load_or_create_secret(settings.data_dir / "jwt-secret")
        self.device_key = settings.device_hash_key or auth.load_or_create_secret(settings.data_dir / "device-hash-key")
        self.tokens = auth.TokenService(self.jwt_secret, settings.device_token_ttl_s, settings.admin_token_ttl_s)
        self.metrics = Metrics()
        self.sql = SqlStore(settings.resolved_sql_url, pool_size=settings.sql_pool_size,
                            timeout_s=settings.store_timeout_s)
        self.locations: LocationStore = make_location_store(settings.resolved_locations_url, settings)
        self.videos = FsVideoStore(settings.resolved_video_dir)
        self.events = EventBus()
        self.hub = Hub(self.sql, self.events)
        self.batcher = LocationBatcher(
            self.locations, max_points=settings.batch_max_points, interval_ms=settings.batch_interval_ms,
            queue_points=settings.batch_queue_points, write_timeout_s=settings.store_timeout_s,
            on_flushed=self._on_flushed, on_error=lambda exc: self.metrics.store_errors.labels("locations").inc())
        self.metrics.bind_queue(lambda: self.batcher.queued_points)
        self.login_limiter = RateLimiter(settings.login_rate_per_min, 60.0)
        self.admin = AdminService(self)
        self._tasks: list[asyncio.Task[None]] = []
        #: the generated admin password on a first start (printed once by main)
        self.initial_admin_password: str | None = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, self.settings.resolved_sql_url)
        await self.locations.open()
        await self._bootstrap_admin()
        self.hub.load_queued(await self.sql.imeis_with_queued_commands())
        await self.sql.preload_device_auth()
        self.batcher.start()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))

    async def flush_locations(self, timeout_s: float = 10.0) -> bool:
        return await self.batcher.flush(timeout_s)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.batcher.close()
        await self.videos.aclose()  # finishes the fsync of parts whose upload was cut off
        with contextlib.suppress(Exception):
            await self.sql.touch_devices(self.hub.take_dirty_seen())
        await self.locations.close()
        await self.sql.close()

    async def _bootstrap_admin(self) -> None:
        if await self.sql.count_users():
            return
        preset = self.settings.initial_admin_password
        password = preset.get() if preset else auth.secrets.token_urlsafe(18)
        try:
            await self.sql.create_user("admin", auth.hash_password(password), auth.ROLE_ADMIN, utcnow())
        except Conflict:  # another process created it first
            return
        auth.write_private(self.settings.data_dir / "admin-password", password + "\n")
        if preset is None:
            self.initial_admin_password = password

    async def _housekeeping(self) -> None:
        """Every second: expire commands past their TTL; every 10 s: persist last_seen."""
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                for cmd in await self.sql.expire_commands(utcnow()):
                    self.metrics.commands.labels("expired").inc()
                    self.events.publish("command_status", {"imei": cmd["imei"], "command": command_json(cmd)})
                if tick % 10 == 0:
                    await self.sql.touch_devices(self.hub.take_dirty_seen())
            except Exception as exc:
                log.warning("housekeeping failed: %s", type(exc).__name__)

    def _on_flushed(self, points: Sequence[LocationPoint], seconds: float) -> None:
        self.metrics.points_stored.inc(len(points))
        self.metrics.flush_seconds.observe(seconds)
        if self.events.active:
            newest: dict[str, LocationPoint] = {}
            for p in points:
                if p.imei not in newest or p.ts > newest[p.imei].ts:
                    newest[p.imei] = p
            for p in newest.values():
                self.events.publish("location", {"imei": p.imei, "location": p.to_json()})

    async def readiness(self) -> dict[str, str]:
        """Each store's state: ``ok`` or the reason it is not."""
        result: dict[str, str] = {}
        for name, probe in (("sql", self.sql.ping), ("locations", self.locations.ping),
                            ("videos", self.videos.ping)):
            try:
                async with asyncio.timeout(min(5.0, self.settings.store_timeout_s)):
                    await probe()
                result[name] = "ok"
            except Exception as exc:
                result[name] = f"unavailable: {type(exc).__name__}"
        if self.batcher.degraded and result.get("locations") == "ok":
            result["locations"] = "unavailable: writes failing"
        return result

    # -- devices ---------------------------------------------------------------------------------

    async def register_devices(self, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Register devices ``{imei, name?}`` all or none; returns each with its secret (shown once)."""
        if not entries:
            raise InvalidArgument("no devices given")
        if len(entries) > 10_000:
            raise InvalidArgument("at most 10000 devices per call")
        seen: set[str] = set()
        rows, out = [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise InvalidArgument(f"devices[{i}] must be an object")
            imei = validate_imei(entry.get("imei"))
            if imei in seen:
                raise InvalidArgument(f"IMEI {imei} is given twice")
            seen.add(imei)
            name = entry.get("name")
            if name is not None and (not isinstance(name, str) or len(name) > 128):
                raise InvalidArgument("name must be a string of at most 128 characters")
            secret = auth.new_device_secret()
            rows.append({"imei": imei, "name": name, "secret_hash": auth.hash_device_secret(self.device_key, secret)})
            out.append({"imei": imei, "name": name, "enabled": True, "secret": secret})
        await self.sql.create_devices(rows, utcnow())
        return out

    async def device_login(self, imei: Any, secret: Any) -> tuple[str, dt.datetime]:
        imei = validate_imei(imei)
        if not isinstance(secret, str) or not secret:
            raise InvalidArgument("secret is required")
        device = await self.sql.get_device_auth(imei)
        # same work whether or not the device exists
        stored = device["secret_hash"] if device else "0" * 64
        if not auth.check_device_secret(self.device_key, secret, stored) or device is None:
            raise Unauthorized("unknown IMEI or wrong secret")
        if not device["enabled"]:
            raise Forbidden("this device is disabled")
        return self.tokens.issue(imei, auth.ROLE_DEVICE, device["secret_version"])

    async def authenticate_device(self, principal: auth.Principal) -> dict[str, Any]:
        """The device behind a device token, refusing unknown or disabled ones."""
        device = await self.sql.get_device_auth(principal.sub)
        if device is None:
            raise Unauthorized("unknown device")
        if principal.version != device["secret_version"]:
            raise Unauthorized("the device secret was rotated; log in again")
        if not device["enabled"]:
            raise Forbidden("this device is disabled")
        return device

    # -- admin users -----------------------------------------------------------------------------

    async def admin_login(self, username: Any, password: Any, address: str) -> tuple[str, dt.datetime, str]:
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise InvalidArgument("username and password are required")
        for key in ("user:" + username.lower(), "addr:" + address):
            if not self.login_limiter.allow(key):
                raise RateLimited("too many login attempts; wait a minute")
        user = await self.sql.get_user(username)
        ok = await asyncio.to_thread(auth.check_password, password, user["password_hash"] if user else None)
        if not ok or user is None:
            raise Unauthorized("wrong username or password")
        token, expires = self.tokens.issue(user["username"], user["role"])
        return token, expires, user["role"]

    # -- alarms ----------------------------------------------------------------------------------

    async def report_alarm(self, imei: str, alarm: AlarmIn) -> tuple[dict[str, Any], bool]:
        stored, created = await self.sql.insert_alarm(imei, alarm, utcnow())
        body = alarm_json(stored)
        if created:
            self.metrics.alarms.labels(alarm.type).inc()
            self.events.publish("alarm", {"imei": imei, "alarm": body})
        return body, created

    # -- commands --------------------------------------------------------------------------------

    async def send_command(self, imei: str, body: Any, created_by: str | None) -> dict[str, Any]:
        name, args, ttl = parse_command(body, self.settings.command_ttl_s)
        imei = validate_imei(imei)
        queue_reads = self.hub.queue_reads(imei)  # before the insert: see Hub.deliver_pending
        created = await self.sql.create_command(imei, name, args, ttl, created_by, utcnow())
        if created is None:
            raise NotFound(f"device {imei} is not registered")
        cmd, queued_before = created
        self.hub.note_queued(imei)
        self.metrics.commands.labels("queued").inc()
        self.events.publish("command_status", {"imei": imei, "command": command_json(cmd)})
        if self.hub.is_online(imei):
            # the usual case (online, nothing else waiting): written to the session and marked sent
            # without reading the queue; otherwise the whole queue is delivered in order
            await self.hub.deliver_pending(imei, cmd, None if queued_before else queue_reads)
            if cmd["status"] == "queued":  # not sent by this call: a concurrent delivery may have sent it
                cmd = await self.sql.get_command(cmd["id"]) or cmd
        return command_json(cmd)

    async def command_result(self, imei: str, command_id: Any, ok: Any, detail: Any) -> dict[str, Any] | None:
        if not isinstance(command_id, str) or not command_id:
            raise InvalidArgument("id must be the command's id")
        if not isinstance(ok, bool):
            raise InvalidArgument("ok must be true or false")
        if detail is not None and not isinstance(detail, str):
            raise InvalidArgument("detail must be a string")
        cmd, changed = await self.sql.finish_command(imei, command_id, ok, detail[:2000] if detail else None,
                                                     utcnow())
        if cmd is None:
            raise NotFound("no such command for this device")
        if not changed:
            return command_json(cmd)  # a repeated result: already final
        self.metrics.commands.labels(cmd["status"]).inc()
        body = command_json(cmd)
        self.events.publish("command_status", {"imei": imei, "command": body})
        return body

    # =============================================================================================
    # -- videos (handlers/videos.py; files in storage/videos_fs.py) ------------------------------
    # The object store decides what is complete (a file under <root>/<imei>/); the SQL index mirrors
    # it for listings and for the alarms' per-file ``arrived``, and is repaired from the files when a
    # crash left it behind.

    async def video_upload_state(self, imei: str, name: str) -> tuple[int, bool]:
        """``(offset, complete)`` for HEAD: the complete object's size, or the durable size of a part."""
        name = validate_file_name(name)
        await self.videos.take_over(imei, name)  # the device asks because it believes the upload died
        size = await self.videos.object_size(imei, name)
        if size is not None:
            return size, True
        return await self.videos.part_size(imei, name), False

    async def begin_video_upload(self, imei: str, name: str, offset: int | None,
                                 content_length: int | None) -> PartWriter:
        """Start a PUT (``offset`` None: a new part, replacing any pending one) or a PATCH appending at
        ``offset``. Refuses a body that cannot fit (413) before any byte is read, a second concurrent
        upload of the same file (409) and a PATCH at the wrong offset (409, with the right one)."""
        name = validate_file_name(name)
        limit = self.settings.max_video_bytes
        if content_length is not None and (offset or 0) + content_length > limit:
            self.metrics.uploads.labels("too_large").inc()
            raise PayloadTooLarge(f"a video may have at most {limit} bytes")
        await self.videos.take_over(imei, name)
        self.videos.claim(imei, name)
        try:
            if offset is None:
                return await self.videos.open_part(imei, name, resume=False)
            if await self.videos.object_size(imei, name) is not None:
                raise Conflict("this video is complete already", offset=await self.videos.object_size(imei, name))
            current = await self.videos.part_size(imei, name)
            if offset != current:
                raise Conflict(f"Upload-Offset is {offset}, but {current} bytes are stored", offset=current)
            return await self.videos.open_part(imei, name, resume=True)
        except BaseException:
            self.videos.release(imei, name)
            raise

    async def finish_video_upload(self, writer: PartWriter, expected_sha256: str | None
                                  ) -> tuple[dict[str, Any], int]:
        """The body is complete: check it, then make it visible. ``({name, size, sha256}, status)``:
        201 created, 200 the same content was there already; 409 a different content is there, 400 the
        checksum does not match (in both cases nothing of this upload is kept)."""
        imei, name = writer.imei, writer.name
        try:
            size = await writer.close()
            digest = writer.hexdigest()
            body = {"name": name, "size": size, "sha256": digest}
            if expected_sha256 is not None and digest != expected_sha256:
                await self._drop_video_part(imei, name)
                self.metrics.uploads.labels("checksum_mismatch").inc()
                raise InvalidArgument("the body does not match X-Content-SHA256", sha256=digest)
            existing_size = await self.videos.object_size(imei, name)
            if existing_size is not None:
                await self.videos.discard_part(imei, name)
                existing = await self._indexed_video(imei, name, existing_size)
                if existing["sha256"] == digest and existing_size == size:
                    self.metrics.uploads.labels("duplicate").inc()
                    return body, 200
                self.metrics.uploads.labels("conflict").inc()
                raise Conflict("a different video with this name exists already")
            await self.videos.commit(imei, name)
            now = utcnow()
            await self.sql.upsert_video(imei, name, size, digest, True, now)
            self.metrics.uploads.labels("created").inc()
            self.events.publish("video", {"imei": imei, "video": {**body, "complete": True,
                                                                 "uploaded_at": format_time(now)}})
            return body, 201
        finally:
            self.videos.release(imei, name)

    async def pause_video_upload(self, writer: PartWriter) -> int:
        """Keep the part (a PATCH without ``Upload-Complete: ?1``, or a dropped connection): make it
        durable, index it as incomplete and return the offset to continue from."""
        imei, name = writer.imei, writer.name
        try:
            size = await writer.close()
            if await self.videos.object_size(imei, name) is not None:
                # a re-upload of a complete video: nothing to resume, the next PUT compares again
                await self.videos.discard_part(imei, name)
                return size
            await self.sql.upsert_video(imei, name, size, None, False, None)
            return size
        finally:
            self.videos.release(imei, name)

    async def suspend_video_upload(self, writer: PartWriter) -> None:
        """:meth:`pause_video_upload` for a connection that dropped (runs in the background)."""
        try:
            await self.pause_video_upload(writer)
        except Exception as exc:
            log.warning("could not put away the upload of %s/%s: %s", writer.imei, writer.name, type(exc).__name__)

    async def abandon_video_upload(self, writer: PartWriter) -> None:
        """The body went past the size limit while streaming: keep nothing of it."""
        self.metrics.uploads.labels("too_large").inc()
        try:
            await writer.close(durable=False)
            await self._drop_video_part(writer.imei, writer.name)
        finally:
            self.videos.release(writer.imei, writer.name)

    async def _drop_video_part(self, imei: str, name: str) -> None:
        await self.videos.discard_part(imei, name)
        if await self.videos.object_size(imei, name) is None:
            await self.sql.delete_video(imei, name)  # an incomplete index row, if any

    async def _indexed_video(self, imei: str, name: str, size: int) -> dict[str, Any]:
        """The index row of a complete object; rebuilt from the file when missing or stale."""
        row = await self.sql.get_video(imei, name)
        if row is None or not row["complete"] or not row["sha256"] or row["size"] != size:
            digest = await self.videos.sha256(imei, name)
            uploaded = (row or {}).get("uploaded_at") or utcnow()
            await self.sql.upsert_video(imei, name, size, digest, True, uploaded)
            row = {"imei": imei, "name": name, "size": size, "sha256": digest, "complete": True,
                   "uploaded_at": uploaded}
        return row

    async def video_object(self, imei: str, name: str) -> dict[str, Any]:
        """A complete video for download: ``{name, size, sha256, uploaded_at}``; 404 otherwise."""
        imei, name = validate_imei(imei), validate_file_name(name)
        size = await self.videos.object_size(imei, name)
        if size is None:
            raise NotFound(f"no complete video {name} for device {imei}")
        row = await self._indexed_video(imei, name, size)
        return {"name": name, "size": size, "sha256": row["sha256"], "uploaded_at": row["uploaded_at"]}

    async def list_videos(self, imei: str, limit: int, cursor: str | None) -> dict[str, Any]:
        imei = validate_imei(imei)
        after = _decode_video_cursor(cursor) if cursor else None
        if after is None and await self.sql.get_device(imei) is None:
            raise NotFound(f"device {imei} is not registered")
        rows = await self.sql.list_videos(imei, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{"name": r["name"], "size": r["size"], "sha256": r["sha256"], "complete": r["complete"],
                  "uploaded_at": format_time(r["uploaded_at"]), "alarm_ids": r["alarm_ids"]} for r in rows]
        return {"items": items, "next_cursor": _encode_video_cursor(rows[-1]["name"]) if more else None}


def _encode_video_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(("v1:" + name).encode()).decode().rstrip("=")


def _decode_video_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("cursor is not valid") from None
    if not text.startswith("v1:"):
        raise InvalidArgument("cursor is not valid")
    return validate_file_name(text[3:])
# -- end of videos ----------------------------------------------------------------------------
