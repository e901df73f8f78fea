"""The bus: what processes of one deployment tell each other. Four things cross it:

- **events** (location, alarm, device_status, command_status, video): every process publishes, every
  admin feed and ``?wait=`` long poll subscribes;
- **invalidation**: a device was disabled, rotated or changed, a user changed; every process drops its
  cached copy and closes the sockets it holds that the change concerns;
- **commands**: a command was queued for an IMEI; the process holding its socket delivers it;
- **presence**: which devices have a socket somewhere (``online``), and a device's new socket taking
  over from an older one held elsewhere;
- **nodes**: which processes are alive (``nodes``), and the request to one of them to cut off an upload
  it is receiving (``upload_preempt``: the device resumed it elsewhere).

The SQL store stays the source of truth (the command queue, devices, users): a lost bus message only
delays, it never loses (delivery on connect and periodic sweeps catch up).

:class:`LocalBus` is the one-process implementation: everything is a direct call on this process.
Domain code talks to the :class:`Bus` Protocol only, so a cluster implementation plugs in through
``wiring.py`` without touching it: :class:`~truckx_server.bus_redis.RedisBus` (``--bus-url``).
"""

from __future__ import annotations

import logging
import datetime as dt
from typing import Any, Awaitable, Callable, Protocol, Sequence

from .hub import Hub
from .models import format_time, utcnow

log = logging.getLogger("truckx.bus")

Subscriber = Callable[[dict[str, Any]], None]
#: (kind, key): ("device.disabled", imei), ("user.changed", username), ...
Invalidation = Callable[[str, str], None]
#: (imei, command just queued, process-local delivery hint or None)
CommandQueued = Callable[[str, dict[str, Any], Any], Awaitable[None]]
#: (imei, file name): cut off the upload of that file this process is receiving
UploadPreempt = Callable[[str, str], None]

#: the invalidation kind a cluster bus sends to this process's handlers (key "") when it reconnected after
#: an outage: messages may have been missed, so every cache is dropped and every queue swept
RESYNC = "bus.resync"


def node_json(node_id: str, started_at: dt.datetime, sessions: int, last_heartbeat: dt.datetime) -> dict[str, Any]:
    return {"node_id": node_id, "started_at": format_time(started_at), "sessions": sessions,
            "last_heartbeat": format_time(last_heartbeat)}


class Bus(Protocol):
    node_id: str
    #: True when other processes may share the stores (a cluster bus); False for :class:`LocalBus`
    clustered: bool

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the bus cannot be reached (readiness)."""

    # events
    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber on every process (fire and forget)."""

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every event on this process; returns the unsubscribe function."""

    @property
    def active(self) -> bool:
        """Whether publishing reaches anyone (publishers skip building events when not)."""

    # invalidation
    def invalidate(self, kind: str, *keys: str) -> None:
        """Tell every process (this one included, synchronously) that ``keys`` of ``kind`` changed."""

    def on_invalidate(self, callback: Invalidation) -> None: ...

    # commands
    async def command_queued(self, imei: str, command: dict[str, Any], hint: Any = None) -> None:
        """A command for ``imei`` is stored: the process holding its socket delivers it. ``hint`` is
        process-local delivery state, meaningful only if that is this process."""

    def on_command_queued(self, callback: CommandQueued) -> None: ...

    # presence
    def session_opened(self, imei: str) -> None:
        """This process now holds ``imei``'s socket (an older one elsewhere is closed with 4409)."""

    def session_closed(self, imei: str) -> None: ...

    async def online(self, imeis: Sequence[str]) -> set[str]:
        """Which of ``imeis`` have a live socket on any process."""

    # nodes
    async def nodes(self) -> list[dict[str, Any]]:
        """The live processes: ``{node_id, started_at, sessions, last_heartbeat}`` each."""

    def upload_preempt(self, node_id: str, imei: str, name: str) -> None:
        """Ask process ``node_id`` to cut off its upload of ``(imei, name)`` (a newer request took over)."""

    def on_upload_preempt(self, callback: UploadPreempt) -> None: ...


class LocalBus:
    """Everything on one process: events and invalidations are direct calls, presence is the hub."""

    clustered = False

    def __init__(self, hub: Hub, node_id: str = "local", started_at: dt.datetime | None = None) -> None:
        self.hub = hub
        self.node_id = node_id
        self.started_at = started_at or utcnow()
        self._subscribers: set[Subscriber] = set()
        self._invalidation: list[Invalidation] = []
        self._command_queued: CommandQueued | None = None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.add(callback)
        return lambda: self._subscribers.discard(callback)

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        if not self._subscribers:
            return
        event = {"type": event_type, "at": format_time(utcnow()), **data}
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break publishing
                log.exception("event subscriber failed")

    # -- invalidation ----------------------------------------------------------------------------

    def on_invalidate(self, callback: Invalidation) -> None:
        self._invalidation.append(callback)

    def invalidate(self, kind: str, *keys: str) -> None:
        for key in keys:
            for callback in self._invalidation:
                try:
                    callback(kind, key)
                except Exception:
                    log.exception("invalidation handler failed")

    # -- commands --------------------------------------------------------------------------------

    def on_command_queued(self, callback: CommandQueued) -> None:
        self._command_queued = callback

    async def command_queued(self, imei: str, command: dict[str, Any], hint: Any = None) -> None:
        if self._command_queued is not None:
            await self._command_queued(imei, command, hint)

    # -- presence --------------------------------------------------------------------------------

    def session_opened(self, imei: str) -> None:
        return None  # the hub replaced an older socket of this process already

    def session_closed(self, imei: str) -> None:
        return None

    async def online(self, imeis: Sequence[str]) -> set[str]:
        sessions = self.hub.sessions
        return {imei for imei in imeis if imei in sessions}

    # -- nodes -----------------------------------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        return [node_json(self.node_id, self.started_at, len(self.hub.sessions), utcnow())]

    def upload_preempt(self, node_id: str, imei: str, name: str) -> None:
        return None  # one process: the video store cuts off its own uploads

    def on_upload_preempt(self, callback: UploadPreempt) -> None:
        return None
