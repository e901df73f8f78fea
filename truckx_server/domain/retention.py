"""Retention: background passes that delete what is older than the configured number of days, and
the summary of what the stores hold (``GET /api/v1/admin/storage``).

What goes (``--retain-*-days``, 0 keeps forever):

- location points whose ``ts`` is older (each device's newest point stays in ``latest``);
- cleared alarms whose ``ts`` is older, with their file rows (their videos follow video retention);
- complete videos uploaded longer ago, with their index rows, unless they are *evidence*: named by an
  alarm that is not ``cleared``. Evidence stays, whatever its age.

How a pass runs:

- one process at a time: a pass first takes the ``retention`` lease in the SQL store (a conditional
  UPDATE on a row with an expiry); a process that does not get it skips the pass. The lease outlives
  a pass's time budget, and is released when the pass ends, so a process that dies mid-pass holds it
  up only until it expires;
- in bounded batches (500 points of one device, 500 alarms, 100 videos), each one short write; after
  each batch the pass sleeps twice as long as the batch took (at least a few milliseconds), so the
  stores spend at most about a third of their time on retention and ingest's flushes get in between;
- within a time budget (60 s by default): what is left is done by the next pass;
- "now" is a parameter (the tests run a pass as of a date in the future instead of sleeping for days);
  the lease and the pass history use the real clock.

Deleting a video: its index row is deleted first, by one statement that re-checks the rule (still
complete, still old, still not evidence), then its object. A crash between the two leaves an object
with no index row; it is invisible to listings, and downloading it re-indexes it with a fresh upload
time, so it is kept one more period (never lost early). A video whose upload runs on this process is
skipped until the next pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..metrics import Metrics
from ..models import format_time, utcnow
from ..storage.base import LocationStore, VideoStore
from ..storage.sql.retention import RetentionRows

log = logging.getLogger("truckx.retention")

LEASE = "retention"
#: rows per batch: location points (per device), cleared alarms, videos
LOCATION_BATCH = 500
ALARM_BATCH = 500
VIDEO_BATCH = 100
#: the shortest pause between two batches (the pause is otherwise twice as long as the batch took)
MIN_PAUSE_S = 0.005
PAUSE_FACTOR = 2.0
#: the first pass runs this long after start
FIRST_DELAY_S = 10.0
#: a pass stops after this long; the rest waits for the next pass
BUDGET_S = 60.0
#: bytes an alarm takes with its files, when the database cannot estimate its tables
ALARM_BYTES_GUESS = 512
KINDS = ("locations", "alarms", "videos")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each kind (0: forever)."""

    locations_days: int = 0
    videos_days: int = 0
    alarms_days: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.locations_days or self.videos_days or self.alarms_days)

    def json(self) -> dict[str, int]:
        return {"locations_days": self.locations_days, "videos_days": self.videos_days,
                "alarms_days": self.alarms_days}


class _Budget:
    """A pass's deadline, and the pause after each batch."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    @property
    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    async def batch(self, fn: Callable[[], Awaitable[int]]) -> int:
        started = time.monotonic()
        removed = await fn()
        await asyncio.sleep(max(MIN_PAUSE_S, PAUSE_FACTOR * (time.monotonic() - started)))
        return removed


def node_name() -> str:
    """This process, for the lease and the pass history: host, pid and a random suffix."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class RetentionService:
    def __init__(self, rows: RetentionRows, locations: LocationStore, videos: VideoStore, policy: RetentionPolicy,
                 interval_s: float, metrics: Metrics, *, budget_s: float = BUDGET_S,
                 first_delay_s: float = FIRST_DELAY_S, node: str | None = None) -> None:
        self.rows = rows
        self.locations = locations
        self.videos = videos
        self.policy = policy
        self.interval_s = interval_s
        self.metrics = metrics
        self.budget_s = budget_s
        self.first_delay_s = first_delay_s
        self.node = node or node_name()
        #: the lease outlives a pass's budget (the last batch and the bookkeeping run past it)
        self.lease_ttl_s = budget_s * 2 + 30

    # -- passes ----------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """The background loop: the first pass after ``first_delay_s``, then one every ``interval_s``.
        A pass another process ran less than half an interval ago (complete) is not repeated."""
        await asyncio.sleep(self.first_delay_s)
        while True:
            try:
                last = await self.rows.last_pass()
                recent = (last is not None and last["complete"]
                          and utcnow() - last["finished_at"] < dt.timedelta(seconds=self.interval_s / 2))
                if not recent:
                    await self.run_pass()
            except Exception as exc:  # noqa: BLE001 - a failed pass is retried at the next interval
                log.warning("retention pass failed: %s", type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def run_pass(self, now: dt.datetime | None = None) -> dict[str, Any] | None:
        """One pass as of ``now`` (default: the real time). Returns what it removed, or None when another
        process holds the lease (it is running a pass)."""
        now = now or utcnow()
        started = utcnow()
        if not await self.rows.take_lease(LEASE, self.node, started, self.lease_ttl_s):
            log.debug("retention: another process holds the lease")
            return None
        budget = _Budget(self.budget_s)
        removed = {"locations": 0, "alarms": 0, "videos": 0, "video_bytes": 0}
        try:
            p = self.policy
            if p.locations_days:
                removed["locations"] = await self._locations(now - dt.timedelta(days=p.locations_days), budget)
            if p.alarms_days and not budget.over:
                removed["alarms"] = await self._alarms(now - dt.timedelta(days=p.alarms_days), budget)
            if p.videos_days and not budget.over:
                removed["videos"], removed["video_bytes"] = await self._videos(
                    now - dt.timedelta(days=p.videos_days), budget)
            complete = not budget.over
            finished = utcnow()
            await self.rows.record_pass(self.node, started, finished, complete, removed)
        finally:
            await self.rows.release_lease(LEASE, self.node, utcnow())
        for kind in KINDS:
            if removed[kind]:
                self.metrics.retention_removed.labels(kind).inc(removed[kind])
        if any(removed[k] for k in KINDS):
            log.info("retention pass removed %d points, %d alarms, %d videos (%d bytes)%s", removed["locations"],
                     removed["alarms"], removed["videos"], removed["video_bytes"],
                     "" if complete else "; out of time, the rest waits for the next pass")
        return {"started_at": format_time(started), "at": format_time(finished), "node": self.node,
                "complete": complete, "removed": removed}

    async def _locations(self, before: dt.datetime, budget: _Budget) -> int:
        total = 0
        for imei in await self.locations.devices():
            while not budget.over:
                n = await budget.batch(lambda: self.locations.delete_before(imei, before, LOCATION_BATCH))
                total += n
                if n < LOCATION_BATCH:
                    break
            if budget.over:
                break
        return total

    async def _alarms(self, before: dt.datetime, budget: _Budget) -> int:
        total = 0
        while not budget.over:
            n = await budget.batch(lambda: self.rows.delete_cleared_alarms(before, ALARM_BATCH))
            total += n
            if n < ALARM_BATCH:
                break
        return total

    async def _videos(self, before: dt.datetime, budget: _Budget) -> tuple[int, int]:
        count = size = 0
        after: tuple[dt.datetime, str, str] | None = None
        while not budget.over:
            batch = await self.rows.old_videos(before, VIDEO_BATCH, after)
            started = time.monotonic()
            for video in batch:
                after = (video["uploaded_at"], video["imei"], video["name"])
                if self.videos.is_busy(video["imei"], video["name"]):
                    continue  # an upload of it runs here: the next pass
                if await self.rows.unindex_old_video(video["imei"], video["name"], before):
                    try:
                        await self.videos.delete(video["imei"], video["name"])
                    except Exception:
                        await self.rows.reindex(video)  # nothing was lost: keep it indexed, try again later
                        raise
                    count += 1
                    size += video["size"]
            await asyncio.sleep(max(MIN_PAUSE_S, PAUSE_FACTOR * (time.monotonic() - started)))
            if len(batch) < VIDEO_BATCH:
                break
        return count, size

    # -- what the stores hold --------------------------------------------------------------------

    async def storage(self) -> dict[str, Any]:
        locations = await self.locations.stats()
        alarms = await self.rows.alarm_stats()
        alarm_bytes = await self.rows.table_bytes(["alarms", "alarm_files"])
        if alarm_bytes is None:
            alarm_bytes = alarms["count"] * ALARM_BYTES_GUESS
        videos = await self.rows.video_stats()
        last = await self.rows.last_pass()
        return {
            "locations": {"count": locations["count"], "bytes": locations["bytes"],
                          "oldest": format_time(locations["oldest"])},
            "alarms": {"count": alarms["count"], "bytes": alarm_bytes, "oldest": format_time(alarms["oldest"])},
            "videos": {"count": videos["count"], "bytes": videos["bytes"], "oldest": format_time(videos["oldest"]),
                       "evidence": videos["evidence"], "incomplete": videos["incomplete"]},
            "last_pass": None if last is None else {
                "at": format_time(last["finished_at"]), "started_at": format_time(last["started_at"]),
                "node": last["node"], "complete": bool(last["complete"]),
                "removed": {"locations": last["removed_locations"], "alarms": last["removed_alarms"],
                            "videos": last["removed_videos"], "video_bytes": last["removed_video_bytes"]}},
            "retention": {**self.policy.json(), "interval_s": self.interval_s},
        }
