"""The device WebSocket: locations in (group-committed, cumulatively acked), commands out.

One instance per connection. ``on_message`` is a coroutine, so Tornado reads the connection's next
frame only after it returns; when the location queue is full, ``submit`` waits, and so the socket is not
read (backpressure). Frames over ``websocket_max_message_size`` close the connection with 1009 (Tornado).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from ..errors import InvalidArgument, TruckxError
from ..models import MAX_POINTS_PER_MESSAGE, parse_point, parse_seq, utcnow
from .base import ApiMixin

log = logging.getLogger("truckx.ws")


class DeviceSocket(ApiMixin, tornado.websocket.WebSocketHandler):
    roles = {"GET": ("device",)}

    def initialize(self) -> None:
        self.imei = ""
        self._open = False

    # -- handshake -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        principal = self.authenticate(allow_query_token=True)
        assert principal is not None
        await self.services.authenticate_device(principal)
        self.imei = principal.sub

    def check_origin(self, origin: str) -> bool:
        return True  # devices are not browsers; authentication is the bearer token, never a cookie

    # -- session ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open and self.ws_connection is not None and not self.ws_connection.is_closing()

    async def open(self, *args: Any) -> None:
        self._open = True
        self.set_nodelay(True)
        self.services.metrics.ws_connections.inc()
        self.services.hub.register(self)  # marks last_seen; housekeeping persists it every 10 s
        await self.services.hub.deliver_pending(self.imei)

    def on_close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.services.metrics.ws_connections.dec()
        self.services.hub.unregister(self)

    async def send(self, message: dict[str, Any]) -> None:
        await self.write_message(json.dumps(message, separators=(",", ":")))

    def send_nowait(self, message: dict[str, Any]) -> None:
        if not self.is_open:
            return
        try:
            self.write_message(json.dumps(message, separators=(",", ":")))
            if message.get("type") == "ack":
                self.services.metrics.acks.inc()
        except tornado.websocket.WebSocketClosedError:
            pass

    def _error(self, code: str, message: str, seq: int | None = None, **extra: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if seq is not None:
            frame["seq"] = seq
        frame.update(extra)
        self.services.metrics.errors.labels(code).inc()
        self.send_nowait(frame)

    # -- messages --------------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        hub, metrics = self.services.hub, self.services.metrics
        hub.seen(self.imei)
        if isinstance(message, bytes):
            metrics.ws_messages.labels("binary").inc()
            self._error("invalid_json", "send JSON text frames, not binary")
            return
        try:
            msg = json.loads(message)
        except ValueError:
            metrics.ws_messages.labels("invalid").inc()
            self._error("invalid_json", "the frame is not valid JSON")
            return
        if not isinstance(msg, dict):
            metrics.ws_messages.labels("invalid").inc()
            self._error("invalid_argument", "a message must be a JSON object")
            return
        kind = msg.get("type")
        metrics.ws_messages.labels(kind if kind in ("location", "locations", "command_result", "ping") else "unknown").inc()
        seq = msg.get("seq") if isinstance(msg.get("seq"), int) else None
        try:
            if kind == "location":
                await self._locations(msg, [msg])
            elif kind == "locations":
                points = msg.get("points")
                if not isinstance(points, list) or not points:
                    raise InvalidArgument("points must be a non-empty list")
                if len(points) > MAX_POINTS_PER_MESSAGE:
                    raise InvalidArgument(f"at most {MAX_POINTS_PER_MESSAGE} points per message")
                await self._locations(msg, points)
            elif kind == "ping":
                self.send_nowait({"type": "pong"})
            elif kind == "command_result":
                await self.services.command_result(self.imei, msg.get("id"), msg.get("ok"), msg.get("detail"))
            else:
                raise InvalidArgument("type must be location, locations, command_result or ping")
        except TruckxError as exc:
            self._error(exc.code, exc.message, seq)

    async def _locations(self, msg: dict[str, Any], raw_points: list[Any]) -> None:
        seq = parse_seq(msg)
        now = utcnow()
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
        await self.services.batcher.submit(self, seq, points)


def routes() -> list:
    return [(r"/api/v1/device/ws", DeviceSocket)]
