"""The admin live event feed: ``GET /api/v1/admin/events`` (WebSocket), roles admin and viewer.

Token in the ``Authorization`` header or ``?token=`` (scrubbed from the access log), or the console's
session cookie: browsers send cookies on cross-site WebSocket handshakes too, so a handshake made with
the cookie must come from this server's own pages (``Origin`` naming this host). Optional ``?imei=``
(repeatable, or comma-separated) keeps only those devices' events. Each frame is one event from
the bus (``domain/events.py``): ``{"type": "location"|"alarm"|"device_status"|"command_status"|"video"|"geofence", "at", "imei",
...}``.

Every subscriber has a queue bounded in events (1000) and in bytes (4 MiB: one alarm may carry up to
1 MiB of details); one writer task drains it, awaiting each write, so a slow consumer never grows the
server's buffers beyond that and the one frame being written: when its queue overflows, the feed is
closed with 4429 (reconnect and re-read what was missed through the REST calls). A user holds at most
``--max-feeds-per-user`` feeds per process; a newer one closes the oldest with 4409
(``domain/events.py``). Every feed is closed on shutdown (1001), and a user's feeds when its tokens are
revoked (4401: deleted, password or role changed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

import tornado.web
import tornado.websocket

from ..errors import Forbidden, TruckxError, Unauthorized
from ..models import load_json, validate_imei
from ..vocab import CLOSE_CREDENTIALS_CHANGED, CLOSE_TOO_SLOW, READ
from .base import ApiMixin

log = logging.getLogger("truckx.events")

QUEUE_EVENTS = 1000
QUEUE_BYTES = 4 * 1024 * 1024
_PONG = '{"type":"pong"}'


class EventsSocket(ApiMixin, tornado.websocket.WebSocketHandler):
    roles = {"GET": READ}
    #: events, and bytes of them, buffered per subscriber before it is closed as too slow
    queue_events = QUEUE_EVENTS
    queue_bytes = QUEUE_BYTES

    def initialize(self) -> None:
        self._checked_at = 0
        self._imeis: frozenset[str] = frozenset()
        self._frames: collections.deque[str] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # -- handshake -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        await self.authenticate(allow_query_token=True)
        if self.session is not None and self.cross_origin():
            raise Forbidden("an event feed opened with the session cookie must come from this server's pages")
        self._checked_at = self.users.generation  # before the check: a change during it is noticed
        await self.users.check(self.principal)
        wanted: list[str] = []
        for value in self.get_query_arguments("imei"):
            wanted.extend(v.strip() for v in value.split(",") if v.strip())
        self._imeis = frozenset(validate_imei(v) for v in wanted)

    def cross_origin(self) -> bool:
        """Whether a browser made this handshake from another origin: ``Sec-Fetch-Site`` when the browser
        sends it (``same-origin``, or ``none`` for one typed in), else ``Origin`` against ``Host``. A
        client that sends neither is not a browser (and holds the cookie itself)."""
        headers = self.request.headers
        site = headers.get("Sec-Fetch-Site")
        if site is not None:
            return site not in ("same-origin", "none")
        origin = headers.get("Origin")
        return origin is not None and urlsplit(origin).netloc.lower() != headers.get("Host", "").lower()

    def check_origin(self, origin: str) -> bool:
        return True  # a bearer token may come from anywhere; the cookie's origin is checked in prepare

    # -- feed ------------------------------------------------------------------------------------

    async def open(self, *args: Any) -> None:
        self.set_nodelay(True)
        assert self.principal is not None
        self._unsubscribe = self.events.open_feed(self, self.principal.sub, self._on_event)
        if self.session is not None:  # signing out, on any process, ends the feeds opened with the session
            self._unwatch = self.sessions.on_end(self.session, self._signed_out)
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

    def _signed_out(self) -> None:
        self._stop()
        self.close(CLOSE_CREDENTIALS_CHANGED, "signed out")

    def _on_event(self, event: dict[str, Any], frame: str) -> None:
        if self._closed or (self._imeis and event.get("imei") not in self._imeis):
            return
        if not self._enqueue(frame):
            log.warning("admin event feed of %s too slow: closing it (%d)",
                        self.principal.sub if self.principal else "?", CLOSE_TOO_SLOW)
            self._stop()
            self._frames.clear()
            self._queued_bytes = 0
            self.close(CLOSE_TOO_SLOW, "event feed overflow: the client reads too slowly")

    def _enqueue(self, frame: str) -> bool:
        """Queue ``frame`` (ASCII JSON: one character, one byte); False when it does not fit. One frame
        always fits an empty queue."""
        if self._frames and (len(self._frames) >= self.queue_events
                             or self._queued_bytes + len(frame) > self.queue_bytes):
            return False
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        self._wakeup.set()
        return True

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._frames:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame = self._frames.popleft()
                self._queued_bytes -= len(frame)
                await self.write_message(frame)
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass

    def _stop(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def on_message(self, message: str | bytes) -> None:
        """The feed is one-way; a client's ``{"type": "ping"}`` is answered, anything else ignored."""
        with contextlib.suppress(TruckxError, AttributeError):
            if load_json(message, "the frame").get("type") == "ping" and not self._closed:
                self._enqueue(_PONG)  # dropped when the queue is full

    def on_close(self) -> None:
        self._stop()
        if self._writer is not None:
            self._writer.cancel()


def routes() -> list:
    return [(r"/api/v1/admin/events", EventsSocket)]
