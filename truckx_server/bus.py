"""The bus: what processes of one deployment tell each other. Four things cross it:

- **events** (location, alarm, device_status, command_status, video): every process publishes, every
  admin feed and ``?wait=`` long poll subscribes;
- **invalidation**: a device was disabled, rotated or changed, a user changed; every process drops its
  cached copy and closes the sockets it holds that the change concerns;
- **commands**: a command was queued for an IMEI; the process holding its socket delivers it;
- **presence**: which devices have a socket somewhere (``online``), and a device's new socket taking
  over from an older one held elsewhere.

The SQL store stays the source of truth (the command queue, devices, users): a lost bus message only
delays, it never loses (delivery on connect and periodic sweeps catch up).

:class:`LocalBus` is the one-process implementation: everything is a direct call on this process.
Domain code talks to the :class:`Bus` Protocol only, so a cluster implementation plugs in through
``wiring.py`` without touching it.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol, Sequence

from .hub import Hub
from .models import format_time, utcnow

log = logging.getLogger("truckx.bus")

Subscriber = Callable[[dict[str, Any]], None]
#: (kind, key): ("device.disabled", imei), ("user.changed", username), ...
Invalidation = Callable[[str, str], None]
#: (imei, command just queued, process-local delivery hint or None)
CommandQueued = Callable[[str, dict[str, Any], Any], Awaitable[None]]


class Bus(Protocol):
    node_id: str

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


class LocalBus:
    """Everything on one process: events and invalidations are direct calls, presence is the hub."""

    def __init__(self, hub: Hub, node_id: str = "local") -> None:
        self.hub = hub
        self.node_id = node_id
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
