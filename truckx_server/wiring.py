"""The composition root: builds every store, the hub, the bus, the location batcher and the domain
services once at start-up, starts and stops them in order, runs the housekeeping loop and answers
readiness. No domain rules live here.

Handlers reach the domain services through ``Application.settings`` (see ``app.make_app``), so there
are no module-level singletons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Sequence

from . import auth, migrate, privacy
from .bus import Bus, LocalBus
from .config import Settings
from .domain.alarms import AlarmService
from .domain.audit import AuditService
from .domain.commands import CommandService
from .domain.devices import DeviceService
from .domain.events import EventService
from .domain.geofences import GeofenceService
from .domain.locations import LocationService
from .domain.sessions import SessionService
from .domain.retention import RetentionPolicy, RetentionService
from .domain.trips import TripService
from .domain.nodes import NodeService
from .domain.users import UserService
from .domain.videos import VideoService
from .domain.webhooks import Dispatcher, WebhookService
from .hub import Hub
from .ingest import FrameBudget, LocationBatcher
from .media import MediaProber
from .metrics import Metrics
from .models import LocationPoint, utcnow
from .storage import make_location_store, make_sql_store, make_video_store

log = logging.getLogger("truckx.wiring")

#: seconds between housekeeping ticks; last_seen is persisted every LAST_SEEN_TICKS ticks
HOUSEKEEPING_S = 1.0
LAST_SEEN_TICKS = 10
#: videos whose metadata was never read are looked for every this many ticks (and at start)
VIDEO_SWEEP_TICKS = 10
#: ended browser sessions are deleted every this many ticks
SESSION_PURGE_TICKS = 600
#: with a cluster bus: every this many ticks, deliver queued commands a lost bus message left waiting
SWEEP_TICKS = 5


class Node:
    """One server process: its stores, its live connections and its domain services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        privacy.private_dir(settings.data_dir)
        jwt_secret = settings.jwt_secret or auth.load_or_create_secret(settings.data_dir / "jwt-secret")
        device_key = settings.device_hash_key or auth.load_or_create_secret(settings.data_dir / "device-hash-key")
        self.tokens = auth.TokenService(jwt_secret, settings.device_token_ttl_s, settings.admin_token_ttl_s)
        self.metrics = metrics = Metrics()

        # stores
        self.sql = make_sql_store(settings)
        self.location_store = make_location_store(settings)
        self.video_store = make_video_store(settings, self.sql)

        # this process's connections, and what crosses to other processes
        self.node_id = settings.resolved_node_id
        self.started_at = utcnow()
        self.hub = Hub()
        self.bus: Bus
        if settings.bus_url:
            from .bus_redis import RedisBus
            self.bus = RedisBus(self.hub, settings.bus_url, settings.bus_prefix, self.node_id, self.started_at,
                                timeout_s=min(2.0, settings.store_timeout_s))
        else:
            self.bus = LocalBus(self.hub, self.node_id, self.started_at)

        # domain services
        self.devices = DeviceService(self.sql.devices, self.location_store, self.hub, self.bus, self.tokens,
                                     device_key, settings.device_login_rate_per_min)
        self.users = UserService(self.sql.users, self.bus, self.tokens, settings.login_rate_per_min)
        self.sessions = SessionService(self.sql.sessions, self.bus, self.tokens, self.users.login)
        self.alarms = AlarmService(self.sql.alarms, self.bus, metrics)
        self.commands = CommandService(self.sql.commands, self.hub, self.bus, metrics, settings.command_ttl_s)
        self.locations = LocationService(self.location_store, self.sql.devices, self.bus, metrics)
        self.events = EventService(self.hub, self.bus, settings.max_feeds_per_user)
        self.nodes = NodeService(self.bus)
        self.audit = AuditService(self.sql.audit)
        self.geofences = GeofenceService(self.sql.geofences, self.location_store, self.bus, metrics)
        self.media = MediaProber(workers=settings.media_workers, timeout_s=settings.media_timeout_s,
                                 on_outcome=lambda outcome: metrics.video_probes.labels(outcome).inc())
        self.videos = VideoService(self.video_store, self.sql.videos, self.sql.devices, self.bus, metrics,
                                   settings.max_video_bytes, self.media, uploads=self.sql.uploads)

        self.dispatcher = Dispatcher(
            self.sql.webhooks, metrics, self.node_id, deny_private=settings.webhook_deny_private,
            retry_base_s=settings.webhook_retry_base_s, retry_window_s=settings.webhook_retry_window_s,
            timeout_s=settings.webhook_timeout_s, concurrency=settings.webhook_concurrency)
        self.webhooks = WebhookService(self.sql.webhooks, deny_private=settings.webhook_deny_private,
                                       retry_window_s=settings.webhook_retry_window_s, dispatcher=self.dispatcher)
        # a change that wrote outbox events has committed here: send them now, not at the next poll
        self.sql.db.on_outbox.append(self.dispatcher.wake)
        #: housekeeping ticks between renewals of the presence of the sockets held here, and between
        #: sweeps for devices gone offline: a quarter of --offline-after-s, within 1-30 ticks
        self.presence_ticks = max(1, min(30, int(settings.offline_after_s / 4 / HOUSEKEEPING_S)))

        self.trips = TripService(self.location_store, self.sql.alarms, self.sql.devices, settings.stop_min_s)
        self.retention = RetentionService(
            self.sql.retention, self.location_store, self.video_store,
            RetentionPolicy(settings.retain_locations_days, settings.retain_videos_days, settings.retain_alarms_days),
            settings.retention_interval_s, metrics)

        # the location hot path: group commit with cumulative acks
        self.batcher = LocationBatcher(
            self.location_store, max_points=settings.batch_max_points, interval_ms=settings.batch_interval_ms,
            queue_points=settings.batch_queue_points, write_timeout_s=settings.store_timeout_s,
            on_flushed=self._flushed, on_error=lambda exc: metrics.store_errors.labels("locations").inc())
        metrics.bind_queue(lambda: self.batcher.queued_points)
        #: device frames handled per turn of the event loop, so that a flood does not starve other requests
        self.frame_budget = FrameBudget()

        self._tasks: list[asyncio.Task[None]] = []
        #: the generated admin password on a first start (printed once by main)
        self.initial_admin_password: str | None = None

    def _flushed(self, points: Sequence[LocationPoint], seconds: float) -> None:
        """A group commit stored ``points`` (their devices are acknowledged): live events, and the
        geofence evaluation, queued for a background task."""
        self.locations.flushed(points, seconds)
        self.geofences.evaluator.offer(points)

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._tighten_permissions)
        if self.settings.migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, self.settings.resolved_sql_url)
        await self.location_store.open()
        self.initial_admin_password = await self.users.bootstrap_admin(
            self.settings.data_dir, self.settings.initial_admin_password)
        await self.commands.load()
        await self.devices.warm()
        await self.bus.start()
        await self.geofences.start()
        self.batcher.start()
        self.dispatcher.start()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.retention.policy.enabled:
            self._tasks.append(asyncio.create_task(self.retention.run_forever(), name="retention"))

    def _tighten_permissions(self) -> None:
        """An older version left the data readable by others: make it private (logged once)."""
        s = self.settings
        secrets = [s.data_dir / name for name in ("jwt-secret", "device-hash-key", "admin-password")]
        databases = privacy.sqlite_files(s.resolved_sql_url) + privacy.sqlite_files(s.resolved_locations_url)
        privacy.tighten(s.data_dir, trees=[s.resolved_video_dir], files=secrets + databases)

    async def flush_locations(self, timeout_s: float = 10.0) -> bool:
        return await self.batcher.flush(timeout_s)

    def close_connections(self) -> None:
        """Shutdown: close every device session and admin feed, release command long polls."""
        self.hub.close_all()
        self.commands.close()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.dispatcher.aclose()
        await self.devices.aclose()
        await self.batcher.close()
        await self.geofences.aclose()  # evaluates what the last flush stored (bounded)
        await self.videos.aclose()  # finishes the fsync of parts whose upload was cut off
        with contextlib.suppress(Exception):
            await self.devices.save_last_seen()
        await self.bus.aclose()
        await self.location_store.close()
        await self.sql.close()

    async def _housekeeping(self) -> None:
        """Every second: expire commands past their TTL; every 10 s: persist last_seen, renew the claims
        of uploads running here and let the video store clean up, and schedule videos whose metadata was
        never read; with a cluster bus, every 5 s: sweep the command queue for the devices connected here;
        every 10 minutes: delete ended browser sessions; every quarter of --offline-after-s (1-30 s): renew
        the presence of the sockets held here and announce devices gone offline."""
        tick = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            tick += 1
            try:
                await self.commands.expire()
                if tick % LAST_SEEN_TICKS == 0:
                    await self.devices.save_last_seen()
                    await self.videos.housekeeping()
                if tick % VIDEO_SWEEP_TICKS == 1:
                    await self.videos.sweep()
                if tick % SESSION_PURGE_TICKS == 1:
                    await self.sessions.purge_expired()
                if self.bus.clustered and tick % SWEEP_TICKS == 0:
                    await self.commands.sweep()
                if tick % self.presence_ticks == 0:
                    await self.devices.presence_heartbeat()
                    await self.devices.offline_sweep(self.settings.offline_after_s)
            except Exception as exc:
                log.warning("housekeeping failed: %s", type(exc).__name__)

    async def readiness(self) -> dict[str, str]:
        """Each store's state (and the bus's): ``ok`` or the reason it is not."""
        result: dict[str, str] = {}
        for name, probe in (("sql", self.sql.ping), ("locations", self.location_store.ping),
                            ("videos", self.video_store.ping), ("bus", self.bus.ping)):
            try:
                async with asyncio.timeout(min(5.0, self.settings.store_timeout_s)):
                    await probe()
                result[name] = "ok"
            except Exception as exc:
                result[name] = f"unavailable: {type(exc).__name__}"
        if self.batcher.degraded and result.get("locations") == "ok":
            result["locations"] = "unavailable: writes failing"
        return result
