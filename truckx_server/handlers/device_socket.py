"""The device WebSocket: locations in (group-committed, cumulatively acked), commands out.

One instance per connection. ``on_message`` is a coroutine, so Tornado reads the connection's next
frame only after it returns; when the location queue is full, ``submit`` waits, and so the socket is not
read (backpressure). Frames over ``websocket_max_message_size`` close the connection with 1009 (Tornado).

What the server writes is bounded too: a frame the kernel does not take at once waits in the
connection's buffer, and those frames may add up to ``ws_write_buffer_bytes`` (each counted with
:data:`FRAME_OVERHEAD_BYTES` for what Tornado keeps per frame in flight). A device that keeps sending but
does not read is closed with 4429 instead of growing the server's memory; it resends what it has no ack
for when it reconnects, as after any drop. An ``error`` frame names at most :data:`MAX_REJECTED_NAMED`
refused points, so that replies are never much larger than what provoked them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any, Awaitable, Sequence

import tornado.web
import tornado.websocket

from ..errors import InvalidArgument, TruckxError
from ..domain.locations import MAX_POINTS_PER_MESSAGE, fast_locations, parse_point, parse_seq
from ..models import load_json, utcnow
from ..vocab import CLOSE_INTERNAL_ERROR, CLOSE_TOO_SLOW
from .base import ApiMixin

log = logging.getLogger("truckx.ws")

#: what Tornado keeps per frame written and not yet flushed, beyond its bytes (its write future and the
#: task around it): 1.5 KiB, measured with tracemalloc on CPython 3.11 / Tornado 6.6
FRAME_OVERHEAD_BYTES = 1536
#: refused points named in one ``error`` frame (its message gives the count)
MAX_REJECTED_NAMED = 10


class DeviceSocket(ApiMixin, tornado.websocket.WebSocketHandler):
    roles = {"GET": ("device",)}

    def initialize(self) -> None:
        self.imei = ""
        #: the secret version of the token this session authenticated with
        self.secret_version = 0
        self._open = False
        #: bytes (with FRAME_OVERHEAD_BYTES each) of frames written and not yet taken by the kernel
        self._queued = 0
        self._write_cap = self.node.settings.ws_write_buffer_bytes

    # -- handshake -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        principal = await self.authenticate(allow_query_token=True)
        assert principal is not None
        await self.devices.authenticate(principal)
        self.imei = principal.sub
        self.secret_version = principal.version

    def check_origin(self, origin: str) -> bool:
        return True  # devices are not browsers; authentication is the bearer token, never a cookie

    # -- session ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open and self.ws_connection is not None and not self.ws_connection.is_closing()

    async def open(self, *args: Any) -> None:
        self._open = True
        self.set_nodelay(True)
        self.node.metrics.ws_connections.inc()
        self.devices.session_opened(self)  # marks last_seen; housekeeping persists it every 10 s
        if self.commands.may_have_queued(self.imei):
            await self.commands.deliver(self.imei)

    def on_close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.node.metrics.ws_connections.dec()
        self.devices.session_closed(self)

    async def send(self, message: dict[str, Any]) -> None:
        await self._write(json.dumps(message, separators=(",", ":")))

    def send_nowait(self, message: dict[str, Any]) -> None:
        if not self.is_open:
            return
        try:
            self._write(json.dumps(message, separators=(",", ":")))
            if message.get("type") == "ack":
                self.node.metrics.acks.inc()
        except tornado.websocket.WebSocketClosedError:
            pass

    def _write(self, text: str) -> "asyncio.Future[None]":
        """Write one frame, within the connection's write budget; over it, close the connection (4429)
        and raise WebSocketClosedError."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise tornado.websocket.WebSocketClosedError()
        cost = len(text) + FRAME_OVERHEAD_BYTES
        if self._queued + cost > self._write_cap:
            self._close_not_reading()
            raise tornado.websocket.WebSocketClosedError()
        future = self.write_message(text)
        if conn.stream.writing():  # the kernel did not take it all: it waits in our buffer
            self._queued += cost
            future.add_done_callback(lambda f: self._flushed(f, cost))
        return future

    def _flushed(self, future: "asyncio.Future[None]", cost: int) -> None:
        self._queued -= cost
        if not future.cancelled():
            future.exception()  # a closed connection; nothing to do, but it is not "never retrieved"

    def _close_not_reading(self) -> None:
        log.info("device %s is not reading (%d bytes queued for it): closing its connection with %d",
                 self.imei, self._queued, CLOSE_TOO_SLOW)
        self.close(CLOSE_TOO_SLOW, "not reading: too much queued for this connection")

    def _error(self, code: str, message: str, seq: int | None = None, **extra: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if seq is not None:
            frame["seq"] = seq
        frame.update(extra)
        self.node.metrics.errors.labels(code).inc()
        self.send_nowait(frame)

    # -- messages --------------------------------------------------------------------------------

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """The hot path, synchronous: a location message is validated and queued without creating a
        task. It returns an awaitable only when Tornado must wait before reading this connection's next
        frame: the location queue is full (backpressure), a command result is being stored, or the
        frames of this turn of the event loop are spent (``FrameBudget``: other requests get their turn).

        A bad frame gets an ``error`` frame and the session goes on. A fault of the server itself
        (a bug) is logged and closes the session with 1011, never a silent drop (1006)."""
        if not self.is_open:
            return None  # closing: what the device still sends is dropped (it resends what is not acked)
        try:
            pending = self._dispatch(message)
        except Exception:
            self._internal_error()
            return None
        if pending is None:
            return self.node.frame_budget.spend()  # None, or the next turn of the loop (fairness)
        return self._guarded(pending)

    async def _guarded(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            self._internal_error()

    def _internal_error(self) -> None:
        log.exception("device %s: unexpected error on a message; closing with 1011", self.imei)
        self._error("internal", "internal server error")
        self.close(CLOSE_INTERNAL_ERROR, "internal server error")

    def _dispatch(self, message: str | bytes) -> Awaitable[None] | None:
        node = self.node
        now = utcnow()
        node.hub.seen(self.imei, now)
        count = node.metrics.ws_message_kind
        if isinstance(message, bytes):
            count("binary")
            self._error("invalid_json", "send JSON text frames, not binary")
            return None
        fast = fast_locations(self.imei, message, now)
        if fast is not None:  # a valid location(s) frame, decoded and checked in one pass
            kind, seq, points = fast
            count(kind)
            return node.batcher.offer(self, seq, points)
        try:
            msg = load_json(message, "the frame")
        except TruckxError as exc:
            count("invalid")
            self._error(exc.code, exc.message)
            return None
        if not isinstance(msg, dict):
            count("invalid")
            self._error("invalid_argument", "a message must be a JSON object")
            return None
        kind = msg.get("type")
        count(kind)
        try:
            if kind == "location":
                return self._locations(msg, (msg,), now)
            if kind == "locations":
                points = msg.get("points")
                if not isinstance(points, list) or not points:
                    raise InvalidArgument("points must be a non-empty list")
                if len(points) > MAX_POINTS_PER_MESSAGE:
                    raise InvalidArgument(f"at most {MAX_POINTS_PER_MESSAGE} points per message")
                return self._locations(msg, points, now)
            if kind == "ping":
                self.send_nowait({"type": "pong"})
                return None
            if kind == "command_result":
                return self._command_result(msg)
            raise InvalidArgument("type must be location, locations, command_result or ping")
        except TruckxError as exc:
            seq = msg.get("seq")
            self._error(exc.code, exc.message, seq if isinstance(seq, int) else None)
            return None

    def _locations(self, msg: dict[str, Any], raw_points: Sequence[Any], now: dt.datetime) -> Awaitable[None] | None:
        seq = parse_seq(msg)
        points, rejected = [], []
        for i, raw in enumerate(raw_points):
            try:
                points.append(parse_point(self.imei, raw, now))
            except InvalidArgument as exc:
                rejected.append({"index": i, "message": exc.message})
        if rejected:
            # the valid points are kept; the device learns which ones were refused
            self._error("invalid_argument", f"{len(rejected)} of {len(raw_points)} points refused", seq,
                        rejected=rejected[:MAX_REJECTED_NAMED])
        return self.node.batcher.offer(self, seq, points)

    async def _command_result(self, msg: dict[str, Any]) -> None:
        try:
            await self.commands.result(self.imei, msg.get("id"), msg.get("ok"), msg.get("detail"))
        except TruckxError as exc:
            self._error(exc.code, exc.message)


def routes() -> list:
    return [(r"/api/v1/device/ws", DeviceSocket)]
