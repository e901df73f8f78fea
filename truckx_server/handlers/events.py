"""The admin live event feed: ``GET /api/v1/admin/events`` (WebSocket), every admin-plane role.

Token in the ``Authorization`` header or ``?token=`` (scrubbed from the access log). Optional ``?imei=``
(repeatable, or comma-separated) keeps only those devices' events. Each frame is one event from
the bus (``domain/events.py``): ``{"type": "location"|"alarm"|"device_status"|"command_status"|"video", "at", "imei",
...}``.

Every subscriber has a bounded queue; one writer task drains it, awaiting each write, so a slow consumer
never grows the server's buffers: when its queue overflows, the feed is closed with 4429 (reconnect and
re-read what was missed through the REST calls). Every feed is closed on shutdown (1001), and a user's
feeds when its tokens are revoked (4401: deleted, password or role changed; ``domain/events.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Callable

import tornado.web
import tornado.websocket

from ..errors import TruckxError, Unauthorized
from ..models import validate_imei
from ..vocab import CLOSE_CREDENTIALS_CHANGED, CLOSE_TOO_SLOW, READ
from .base import ApiMixin

log = logging.getLogger("truckx.events")

QUEUE_EVENTS = 1000


class EventsSocket(ApiMixin, tornado.websocket.WebSocketHandler):
    roles = {"GET": READ}
    #: events buffered per subscriber before it is closed as too slow
    queue_events = QUEUE_EVENTS

    def initialize(self) -> None:
        self.username = ""
        self._checked_at = 0
        self._imeis: frozenset[str] = frozenset()
        self._queue: asyncio.Queue[str] = asyncio.Queue(self.queue_events)
        self._unsubscribe: Callable[[], None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # -- handshake -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        principal = self.authenticate(allow_query_token=True)
        assert principal is not None
        self.username = principal.sub
        self._checked_at = self.users.generation  # before the check: a change during it is noticed
        await self.users.check(principal)
        wanted: list[str] = []
        for value in self.get_query_arguments("imei"):
            wanted.extend(v.strip() for v in value.split(",") if v.strip())
        self._imeis = frozenset(validate_imei(v) for v in wanted)

    def check_origin(self, origin: str) -> bool:
        return True  # authentication is the bearer token, never a cookie

    # -- feed ------------------------------------------------------------------------------------

    async def open(self, *args: Any) -> None:
        self.set_nodelay(True)
        self._unsubscribe = self.events.open_feed(self, self._on_event)
        self._writer = asyncio.ensure_future(self._write_loop())
        if self.users.generation != self._checked_at:
            # a user changed between the token check and now: a revocation of this user may have
            # closed its feeds before this one was added, so check the token again
            try:
                await self.users.check(self.principal)
            except Unauthorized:
                self.close(CLOSE_CREDENTIALS_CHANGED, "token revoked; log in again")
            except TruckxError:  # could not check (a store is unavailable): fail closed
                self.close(1011, "could not check the token; reconnect")

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._stop()  # no more events from the moment it is closed
        super().close(code, reason)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self._closed or (self._imeis and event.get("imei") not in self._imeis):
            return
        try:
            self._queue.put_nowait(json.dumps(event, separators=(",", ":"), default=str))
        except asyncio.QueueFull:
            log.warning("admin event feed of %s too slow: closing it", self.principal.sub if self.principal else "?")
            self._stop()
            self.close(CLOSE_TOO_SLOW, "event feed overflow: the client reads too slowly")

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                await self.write_message(frame)
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass

    def _stop(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_message(self, message: str | bytes) -> None:
        """The feed is one-way; a client's ``{"type": "ping"}`` is answered, anything else ignored."""
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(message).get("type") == "ping":
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait('{"type":"pong"}')

    def on_close(self) -> None:
        self._stop()
        if self._writer is not None:
            self._writer.cancel()


def routes() -> list:
    return [(r"/api/v1/admin/events", EventsSocket)]
