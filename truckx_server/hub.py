"""Live device sessions, command delivery and the in-process event bus.

- :class:`EventBus` fans events (location, alarm, device_status, command_status, video) out to the admin
  event feeds and to waiters (``GET /commands/{id}?wait=``). Publishing costs nothing with no subscriber.
- :class:`Hub` knows which device is connected where; a second connection of an IMEI replaces the
  first (closed with 4409). It delivers queued commands: one delivery path, serialised per IMEI, used
  both when a command is created for an online device and when a device connects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import weakref
from typing import Any, Callable, Protocol

from .models import format_time, utcnow

log = logging.getLogger("truckx.hub")

CLOSE_REPLACED = 4409
CLOSE_DISABLED = 4403
CLOSE_CREDENTIALS_CHANGED = 4401
CLOSE_GOING_AWAY = 1001

Subscriber = Callable[[dict[str, Any]], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()

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


class Session(Protocol):
    imei: str

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; raises if the connection is closed."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    @property
    def is_open(self) -> bool: ...


class CommandStore(Protocol):
    async def queued_commands(self, imei: str, now: dt.datetime) -> list[dict[str, Any]]: ...

    async def mark_command_sent(self, command_id: str, now: dt.datetime) -> bool: ...


def command_json(cmd: dict[str, Any]) -> dict[str, Any]:
    return {"id": cmd["id"], "imei": cmd["imei"], "command": cmd["command"], "args": cmd["args"],
            "status": cmd["status"], "created_by": cmd.get("created_by"),
            "created_at": format_time(cmd["created_at"]), "expires_at": format_time(cmd["expires_at"]),
            "sent_at": format_time(cmd.get("sent_at")), "finished_at": format_time(cmd.get("finished_at")),
            "detail": cmd.get("detail")}


class Hub:
    def __init__(self, store: CommandStore, events: EventBus) -> None:
        self.store = store
        self.events = events
        self.sessions: dict[str, Session] = {}
        #: last time each device was heard from; persisted periodically by the services
        self.last_seen: dict[str, dt.datetime] = {}
        self._dirty_seen: set[str] = set()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        #: per IMEI, how many times deliver_pending has read the queue (see :meth:`queue_reads`)
        self._queue_reads: dict[str, int] = {}
        #: IMEIs that may have queued commands, so that a connecting device with none (nearly all of
        #: them, in a reconnect storm) costs no queue query; marks count note_queued() calls per IMEI
        self._maybe_queued: set[str] = set()
        self._queued_marks: dict[str, int] = {}

    # -- sessions --------------------------------------------------------------------------------

    def register(self, session: Session) -> None:
        old = self.sessions.get(session.imei)
        self.sessions[session.imei] = session
        self.seen(session.imei)
        if old is not None and old is not session:
            old.close(CLOSE_REPLACED, "replaced by a newer connection")
        else:
            self.events.publish("device_status", {"imei": session.imei, "online": True})

    def unregister(self, session: Session) -> bool:
        """Forget ``session``; True when it was the device's current one (the device is now offline)."""
        if self.sessions.get(session.imei) is not session:
            return False
        del self.sessions[session.imei]
        self.seen(session.imei)
        self.events.publish("device_status", {"imei": session.imei, "online": False})
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

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        for session in list(self.sessions.values()):
            session.close(code, reason)

    # -- commands --------------------------------------------------------------------------------

    def _lock(self, imei: str) -> asyncio.Lock:
        lock = self._locks.get(imei)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[imei] = lock
        return lock

    def note_queued(self, imei: str) -> None:
        """A command for ``imei`` is in the queue (call after it is stored)."""
        self._maybe_queued.add(imei)
        self._queued_marks[imei] = self._queued_marks.get(imei, 0) + 1

    def load_queued(self, imeis: list[str]) -> None:
        for imei in imeis:
            self.note_queued(imei)

    def may_have_queued(self, imei: str) -> bool:
        return imei in self._maybe_queued

    def queue_reads(self, imei: str) -> int:
        """A counter that moves whenever :meth:`deliver_pending` has read the queue of ``imei``; read it
        before creating a command to pass as ``fresh_since``."""
        return self._queue_reads.get(imei, 0)

    async def deliver_pending(self, imei: str, fresh: dict[str, Any] | None = None,
                              fresh_since: int | None = None) -> int:
        """Send every queued, unexpired command of ``imei`` over its live connection, oldest first,
        marking each ``sent`` once written. Returns how many were sent.

        ``fresh``: a command just created for ``imei``; it is updated in place when sent. With
        ``fresh_since`` (:meth:`queue_reads` taken before it was created, given only when no older
        command was queued), and if no delivery has read the queue since, no other delivery in this
        process can have seen ``fresh``, and it is sent alone without reading the queue again."""
        if imei not in self.sessions:
            return 0
        lock = self._lock(imei)
        sent = 0
        async with lock:
            full_read = not (fresh is not None and fresh_since is not None
                             and self._queue_reads.get(imei, 0) == fresh_since)
            marks = self._queued_marks.get(imei, 0)
            if not full_read:
                batch = [fresh]
            else:
                batch = await self.store.queued_commands(imei, utcnow())
                # moved after the read: a delivery whose read may have seen a new command is noticed
                self._queue_reads[imei] = self._queue_reads.get(imei, 0) + 1
            for cmd in batch:
                session = self.sessions.get(imei)
                if session is None or not session.is_open:
                    break
                try:
                    await session.send({"type": "command", "id": cmd["id"], "command": cmd["command"],
                                        "args": cmd["args"]})
                except Exception:  # the connection went away: the command stays queued
                    break
                now = utcnow()
                if await self.store.mark_command_sent(cmd["id"], now):
                    sent += 1
                    cmd.update(status="sent", sent_at=now)
                    if fresh is not None and cmd is not fresh and cmd["id"] == fresh["id"]:
                        fresh.update(status="sent", sent_at=now)
                    self.events.publish("command_status", {"imei": imei, "command": command_json(cmd)})
            if full_read and sent == len(batch) and self._queued_marks.get(imei, 0) == marks:
                # the whole queue went out and nothing was queued meanwhile: nothing waits for imei
                self._maybe_queued.discard(imei)
        return sent
