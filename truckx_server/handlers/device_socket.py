"""The device WebSocket: locations in (group-committed, cumulatively acked), commands out.

One instance per connection. ``on_message`` is a coroutine, so Tornado reads the connection's next
frame only after it returns; when the location queue is full, ``submit`` waits, and so the socket is not
read (backpressure). Frames over ``websocket_max_message_size`` close the connection with 1009 (Tornado).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Awaitable, Sequence

import tornado.web
import tornado.websocket

from ..errors import InvalidArgument, TruckxError
from ..domain.locations import MAX_POINTS_PER_MESSAGE, parse_point, parse_seq
from ..models import utcnow
from .base import ApiMixin

log = logging.getLogger("truckx.ws")


class DeviceSocket(ApiMixin, tornado.websocket.WebSocketHandler):
    roles = {"GET": ("device",)}

    def initialize(self) -> None:
        self.imei = ""
        #: the secret version of the token this session authenticated with
        self.secret_version = 0
        self._open = False

    # -- handshake -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        principal = self.authenticate(allow_query_token=True)
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
        await self.write_message(json.dumps(message, separators=(",", ":")))

    def send_nowait(self, message: dict[str, Any]) -> None:
        if not self.is_open:
            return
        try:
            self.write_message(json.dumps(message, separators=(",", ":")))
            if message.get("type") == "ack":
                self.node.metrics.acks.inc()
        except tornado.websocket.WebSocketClosedError:
            pass

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
        frame: the location queue is full (backpressure), or a command result is being stored."""
        node = self.node
        now = utcnow()
        node.hub.seen(self.imei, now)
        count = node.metrics.ws_message_kind
        if isinstance(message, bytes):
            count("binary")
            self._error("invalid_json", "send JSON text frames, not binary")
            return None
        try:
            msg = json.loads(message)
        except ValueError:
            count("invalid")
            self._error("invalid_json", "the frame is not valid JSON")
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
                        rejected=rejected[:100])
        return self.node.batcher.offer(self, seq, points)

    async def _command_result(self, msg: dict[str, Any]) -> None:
        try:
            await self.commands.result(self.imei, msg.get("id"), msg.get("ok"), msg.get("detail"))
        except TruckxError as exc:
            self._error(exc.code, exc.message)


def routes() -> list:
    return [(r"/api/v1/device/ws", DeviceSocket)]
