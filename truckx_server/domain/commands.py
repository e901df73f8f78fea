"""Commands: an admin queues one for a device; it is delivered over the device's live socket (at once when
the device is online, else when it next connects), marked ``sent`` as it is written, and finished by the
device's ``command_result``; queued commands past their TTL expire; an admin (or operator) may cancel a
command while it is still queued, and then it is never sent.

Cancel and delivery race on the same row: each is an UPDATE conditional on ``queued``, and delivery
claims the command (``queued -> sent``) *before* writing it to the socket, so a command that lost to a
cancel is never written. A claim whose write then fails (the connection had gone) is undone (``sent ->
queued``), so the command waits for the next connection. The one case this cannot cover is the process
dying between the claim and the write: that command stays ``sent`` although the device never got it
(at most once), where writing first would have sent a cancelled command.

Delivery is serialised per IMEI on the process that holds the device's socket and always sends the
queue oldest first. Two counters keep the common cases free of queue reads: ``maybe_queued`` (a
connecting device with nothing queued, nearly all of them in a reconnect storm, costs no query) and
``queue_reads`` (a command created for an online device with an empty queue is sent without reading
the queue, when no delivery has read it meanwhile). Both are explained where they are used below.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
import weakref
from typing import Any, Sequence

from .. import paging
from ..bus import RESYNC, Bus
from ..errors import Conflict, InvalidArgument, NotFound
from ..hub import Hub
from ..metrics import Metrics
from ..models import (AuditEntry, OutboxEvent, format_time, imei_list, parse_time, require_object, time_arg, utcnow, validate_imei,
                      whole_number)
from ..storage.sql.commands import CommandRows
from ..vocab import COMMAND_STATUSES, COMMANDS, FINAL_COMMAND_STATUSES

log = logging.getLogger("truckx.commands")

MAX_WAIT_S = 60
MAX_TTL_S = 30 * 86400
DETAIL_MAX = 2000


def parse_command(body: object, default_ttl_s: int) -> tuple[str, dict[str, Any], int]:
    obj = require_object(body)
    name = obj.get("command")
    if name not in COMMANDS:
        raise InvalidArgument("command must be one of " + ", ".join(COMMANDS))
    args = obj.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise InvalidArgument("args must be a JSON object")
    if name == "set_report_interval":
        seconds = whole_number(args.get("seconds"))
        if seconds is None or not 1 <= seconds <= 86400:
            raise InvalidArgument("set_report_interval needs args.seconds, an integer from 1 to 86400")
        args = {"seconds": seconds}
    elif name == "request_video":
        start = parse_time(args.get("from"), "args.from")
        end = parse_time(args.get("to"), "args.to")
        if end <= start:
            raise InvalidArgument("args.to must be after args.from")
        args = {"from": format_time(start), "to": format_time(end)}
    else:
        args = {}
    ttl = whole_number(obj.get("ttl_s", default_ttl_s))
    if ttl is None or not 1 <= ttl <= MAX_TTL_S:
        raise InvalidArgument(f"ttl_s must be an integer from 1 to {MAX_TTL_S}")
    return name, args, ttl


def command_json(cmd: dict[str, Any]) -> dict[str, Any]:
    return {"id": cmd["id"], "imei": cmd["imei"], "command": cmd["command"], "args": cmd["args"],
            "status": cmd["status"], "created_by": cmd.get("created_by"),
            "created_at": format_time(cmd["created_at"]), "expires_at": format_time(cmd["expires_at"]),
            "sent_at": format_time(cmd.get("sent_at")), "finished_at": format_time(cmd.get("finished_at")),
            "detail": cmd.get("detail")}


class CommandService:
    def __init__(self, rows: CommandRows, hub: Hub, bus: Bus, metrics: Metrics, default_ttl_s: int) -> None:
        self.rows = rows
        self.hub = hub
        self.bus = bus
        self.metrics = metrics
        self.default_ttl_s = default_ttl_s
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        #: per IMEI, how many times a delivery has read the queue (see :meth:`_deliver`)
        self._queue_reads: dict[str, int] = {}
        #: IMEIs that may have queued commands, and per IMEI how often a command was queued
        self._maybe_queued: set[str] = set()
        self._queued_marks: dict[str, int] = {}
        self._closing = asyncio.Event()
        self._sweeps: set[asyncio.Task[int]] = set()  # after a bus outage
        bus.on_command_queued(self._queued_here)
        bus.on_invalidate(self._invalidated)

    async def load(self) -> None:
        """At start: every IMEI with queued commands, so that their devices get them on connect."""
        for imei in await self.rows.imeis_with_queued():
            self._note_queued(imei)

    def close(self) -> None:
        """Server shutdown: release every long-polling ``?wait=``."""
        self._closing.set()

    async def sweep(self) -> int:
        """With other processes (a cluster bus): every IMEI with queued commands may have them read on
        its next connect here, and the devices connected here get theirs now. Catches up on command
        messages the bus lost (housekeeping, every few seconds, and after a bus outage). Returns how
        many commands were sent."""
        imeis = await self.rows.imeis_with_queued()
        for imei in imeis:
            self._note_queued(imei)
        sent = 0
        for imei in imeis:
            if imei in self.hub.sessions:
                sent += await self._deliver(imei)
        return sent

    def _invalidated(self, kind: str, _key: str) -> None:
        if kind == RESYNC and not self._closing.is_set():
            task = asyncio.get_running_loop().create_task(self._sweep_logged())
            self._sweeps.add(task)
            task.add_done_callback(self._sweeps.discard)

    async def _sweep_logged(self) -> int:
        try:
            return await self.sweep()
        except Exception as exc:
            log.warning("command sweep failed: %s", type(exc).__name__)
            return 0

    # -- admin -----------------------------------------------------------------------------------

    async def send(self, imei: str, body: Any, created_by: str | None) -> dict[str, Any]:
        name, args, ttl = parse_command(body, self.default_ttl_s)
        imei = validate_imei(imei)
        queue_reads = self._queue_reads.get(imei, 0)  # before the insert: see _deliver
        command_id = str(uuid.uuid4())
        audit = (AuditEntry(created_by, "command.send", command_id,
                            {"imei": imei, "command": name, "args": args, "ttl_s": ttl}) if created_by else None)
        created = await self.rows.create(imei, name, args, ttl, created_by, utcnow(), command_id, audit)
        if created is None:
            raise NotFound(f"device {imei} is not registered")
        cmd, queued_before = created
        self.metrics.commands.labels("queued").inc()
        self.bus.publish("command_status", {"imei": imei, "command": command_json(cmd)})
        # delivered by the process holding the socket; here, the usual case (online, nothing else
        # waiting) is written to the session and marked sent without reading the queue
        await self.bus.command_queued(imei, cmd, None if queued_before else queue_reads)
        if cmd["status"] == "queued" and self.hub.is_online(imei):
            cmd = await self.rows.get(cmd["id"]) or cmd  # a concurrent delivery may have sent it
        return command_json(cmd)

    async def get(self, command_id: str, wait_s: float = 0) -> dict[str, Any]:
        """The command; with ``wait_s`` it returns as soon as the command is final, or when the wait
        (or the server) ends."""
        command_id = _command_id(command_id)
        done = asyncio.Event()
        final: dict[str, Any] = {}

        # woken by the bus (no polling); the event carries the final command, so it is not read again
        def on_event(event: dict[str, Any]) -> None:
            cmd = event.get("command")
            if (event.get("type") == "command_status" and isinstance(cmd, dict) and cmd.get("id") == command_id
                    and cmd.get("status") in FINAL_COMMAND_STATUSES):
                final.update(cmd)
                done.set()

        unsubscribe = self.bus.subscribe(on_event) if wait_s > 0 else None
        try:
            cmd = await self.rows.get(command_id)
            if cmd is None:
                raise NotFound(f"no command {command_id}")
            if wait_s > 0 and cmd["status"] not in FINAL_COMMAND_STATUSES and not self._closing.is_set():
                closing = asyncio.ensure_future(self._closing.wait())
                finished = asyncio.ensure_future(done.wait())
                try:
                    await asyncio.wait((closing, finished), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closing.cancel()
                    finished.cancel()
                if final:
                    return dict(final)
                cmd = await self.rows.get(command_id) or cmd
            return command_json(cmd)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    async def search(self, *, imeis: Sequence[str], statuses: Sequence[str], since: str | None,
                     until: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """Commands, newest first, filtered by device, status and creation time; keyset-paged."""
        for st in statuses:
            if st not in COMMAND_STATUSES:
                raise InvalidArgument("status must be one of " + ", ".join(COMMAND_STATUSES))
        after = paging.decode(cursor, paging.time, paging.text)
        filters = dict(imeis=imei_list(imeis), statuses=list(dict.fromkeys(statuses)),
                       since=time_arg(since, "since"), until=time_arg(until, "until"),
                       before=tuple(after) if after else None)
        page = await paging.keyset(lambda n: self.rows.search(**filters, limit=n), limit,
                                   lambda r: [format_time(r["created_at"]), r["id"]])
        return page.json(command_json)

    async def cancel(self, command_id: str, actor: str) -> dict[str, Any]:
        """A ``queued`` command becomes ``cancelled`` and is never sent; any other state is a conflict."""
        command_id = _command_id(command_id)
        cmd = await self.rows.get(command_id)
        if cmd is None:
            raise NotFound(f"no command {command_id}")
        now = utcnow()
        cancelled = cmd["status"] == "queued" and await self.rows.cancel(
            command_id, now, AuditEntry(actor, "command.cancel", command_id, {"imei": cmd["imei"],
                                                                              "command": cmd["command"]}, at=now),
            announce_finished)
        if not cancelled:
            cmd = await self.rows.get(command_id) or cmd
            raise Conflict(f"only a queued command can be cancelled; this one is {cmd['status']}",
                           status=cmd["status"])
        cmd.update(status="cancelled", finished_at=now)
        body = command_json(cmd)
        self.metrics.commands.labels("cancelled").inc()
        self.bus.publish("command_status", {"imei": cmd["imei"], "command": body})
        return body

    async def expire(self) -> None:
        """Mark queued commands past their TTL ``expired`` (housekeeping, every second)."""
        for cmd in await self.rows.expire(utcnow(), announce_finished):
            self.metrics.commands.labels("expired").inc()
            self.bus.publish("command_status", {"imei": cmd["imei"], "command": command_json(cmd)})

    # -- device ----------------------------------------------------------------------------------

    async def result(self, imei: str, command_id: Any, ok: Any, detail: Any) -> dict[str, Any]:
        """A device's ``command_result``: ``succeeded`` or ``failed``; a repeated one changes nothing."""
        if not isinstance(command_id, str) or not command_id:
            raise InvalidArgument("id must be the command's id")
        if not isinstance(ok, bool):
            raise InvalidArgument("ok must be true or false")
        if detail is not None and not isinstance(detail, str):
            raise InvalidArgument("detail must be a string")
        cmd, changed = await self.rows.finish(imei, command_id, ok, detail[:DETAIL_MAX] if detail else None, utcnow(),
                                              announce_finished)
        if cmd is None:
            raise NotFound("no such command for this device")
        body = command_json(cmd)
        if changed:
            self.metrics.commands.labels(cmd["status"]).inc()
            self.bus.publish("command_status", {"imei": imei, "command": body})
        return body

    def may_have_queued(self, imei: str) -> bool:
        """Whether a connecting device needs its queue read (False for nearly every device)."""
        return imei in self._maybe_queued

    async def deliver(self, imei: str) -> int:
        """Send ``imei`` every queued, unexpired command over its socket on this process (on connect)."""
        return await self._deliver(imei)

    # -- delivery (on the process holding the socket) --------------------------------------------

    def _note_queued(self, imei: str) -> None:
        self._maybe_queued.add(imei)
        self._queued_marks[imei] = self._queued_marks.get(imei, 0) + 1

    async def _queued_here(self, imei: str, cmd: dict[str, Any], fresh_since: Any) -> None:
        """The bus: a command for ``imei`` was stored (here or on another process)."""
        self._note_queued(imei)
        if self.hub.is_online(imei):
            await self._deliver(imei, cmd, fresh_since if isinstance(fresh_since, int) else None)

    def _lock(self, imei: str) -> asyncio.Lock:
        lock = self._locks.get(imei)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[imei] = lock
        return lock

    async def _deliver(self, imei: str, fresh: dict[str, Any] | None = None, fresh_since: int | None = None) -> int:
        """Send every queued, unexpired command of ``imei`` over its live connection, oldest first, each
        claimed (``sent``) just before it is written. Returns how many were sent.

        ``fresh``: a command just created for ``imei``; it is updated in place when sent. With
        ``fresh_since`` (``_queue_reads[imei]`` taken before it was created, given only when no older
        command was queued), and if no delivery has read the queue since, no other delivery in this
        process can have seen ``fresh``, and it is sent alone without reading the queue again."""
        if imei not in self.hub.sessions:
            return 0
        sent = 0
        async with self._lock(imei):
            full_read = not (fresh is not None and fresh_since is not None
                             and self._queue_reads.get(imei, 0) == fresh_since)
            marks = self._queued_marks.get(imei, 0)
            if not full_read:
                batch = [fresh]
            else:
                batch = await self.rows.queued(imei, utcnow())
                # moved after the read: a delivery whose read may have seen a new command is noticed
                self._queue_reads[imei] = self._queue_reads.get(imei, 0) + 1
            settled = 0  # commands of the batch sent, or found no longer queued
            for cmd in batch:
                session = self.hub.sessions.get(imei)
                if session is None or not session.is_open:
                    break
                # claim it first: a command cancelled (or expired, or sent by another delivery) since the
                # queue was read is not queued any more, and is never written to the socket
                now = utcnow()
                if not await self.rows.mark_sent(cmd["id"], now):
                    settled += 1
                    continue
                # published before the write: the device cannot answer before it, so "sent" always
                # comes before the command's final status on the bus
                cmd.update(status="sent", sent_at=now)
                self.bus.publish("command_status", {"imei": imei, "command": command_json(cmd)})
                try:
                    await session.send({"type": "command", "id": cmd["id"], "command": cmd["command"],
                                        "args": cmd["args"]})
                except Exception:  # the connection went away: the command waits for the next one
                    await self._unclaim(imei, cmd, now)
                    break
                sent += 1
                settled += 1
                if fresh is not None and cmd is not fresh and cmd["id"] == fresh["id"]:
                    fresh.update(status="sent", sent_at=now)
            if full_read and settled == len(batch) and self._queued_marks.get(imei, 0) == marks:
                # the whole queue went out and nothing was queued meanwhile: nothing waits for imei
                self._maybe_queued.discard(imei)
        return sent

    async def _unclaim(self, imei: str, cmd: dict[str, Any], claimed_at: dt.datetime) -> None:
        """The claim of ``cmd`` was not followed by a write: it waits for the device's next connection."""
        try:
            back = await self.rows.unmark_sent(cmd["id"], claimed_at)
        except Exception as exc:  # it stays "sent"; nothing else can be done here
            log.warning("could not put command %s back in the queue: %s", cmd["id"], type(exc).__name__)
            return
        self._note_queued(imei)
        if back:
            cmd.update(status="queued", sent_at=None)
            self.bus.publish("command_status", {"imei": imei, "command": command_json(cmd)})


def announce_finished(cmd: dict[str, Any]) -> OutboxEvent:
    """The webhook event of a command that reached a final state (written with that change)."""
    return OutboxEvent("command.finished", command_json(cmd), cmd.get("finished_at") or utcnow())


def _command_id(value: str) -> str:
    """A command id from a path, in its stored form; an id that cannot exist is not found."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"no command {value[:64]}") from None
