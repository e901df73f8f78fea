"""The live connections held by this process: device sessions (one per IMEI) and admin event feeds.

Only this process's sockets are here; what the cluster knows (presence, events, invalidation) goes
through the bus (``bus.py``). A second connection of an IMEI on this process replaces the first (closed
with 4409). ``last_seen`` is gathered here and persisted periodically by the device service.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from .models import utcnow
from .vocab import CLOSE_GOING_AWAY, CLOSE_REPLACED


class Session(Protocol):
    """A device's WebSocket (``handlers.device_socket.DeviceSocket``)."""

    imei: str

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; raises if the connection is closed."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    @property
    def is_open(self) -> bool: ...


class Feed(Protocol):
    """An admin's live event connection (``handlers.events.EventsSocket``)."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        #: last time each device was heard from on this process; persisted periodically
        self.last_seen: dict[str, dt.datetime] = {}
        self._dirty_seen: set[str] = set()
        self.feeds: set[Feed] = set()
        self.closing = False

    # -- device sessions -------------------------------------------------------------------------

    def register(self, session: Session) -> bool:
        """Hold ``session`` as its device's current one; True when it replaced an older one here."""
        old = self.sessions.get(session.imei)
        self.sessions[session.imei] = session
        self.seen(session.imei)
        if old is not None and old is not session:
            old.close(CLOSE_REPLACED, "replaced by a newer connection")
            return True
        return False

    def unregister(self, session: Session) -> bool:
        """Forget ``session``; True when it was the device's current one (the device is now offline here)."""
        if self.sessions.get(session.imei) is not session:
            return False
        del self.sessions[session.imei]
        self.seen(session.imei)
        return True

    def is_online(self, imei: str) -> bool:
        return imei in self.sessions

    def seen(self, imei: str, when: dt.datetime | None = None) -> None:
        self.last_seen[imei] = when or utcnow()
        self._dirty_seen.add(imei)

    def take_dirty_seen(self) -> dict[str, dt.datetime]:
        dirty = {imei: self.last_seen[imei] for imei in self._dirty_seen if imei in self.last_seen}
        self._dirty_seen.clear()
        return dirty

    def disconnect(self, imei: str, code: int, reason: str) -> bool:
        session = self.sessions.get(imei)
        if session is None:
            return False
        session.close(code, reason)
        return True

    # -- admin event feeds -----------------------------------------------------------------------

    def add_feed(self, feed: Feed) -> None:
        if self.closing:
            feed.close(CLOSE_GOING_AWAY, "server shutting down")
            return
        self.feeds.add(feed)

    def remove_feed(self, feed: Feed) -> None:
        self.feeds.discard(feed)

    # -- shutdown --------------------------------------------------------------------------------

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every device session and admin feed held here."""
        self.closing = True
        for session in list(self.sessions.values()):
            session.close(code, reason)
        for feed in list(self.feeds):
            feed.close(code, reason)
        self.feeds.clear()
