"""The cluster bus on Redis (redis-py's asyncio client), chosen by ``--bus-url redis://...``.

What lives in Redis, all under ``--bus-prefix`` (default ``truckx``), every structure bounded:

- ``<p>:dev:<imei>`` -> node id: presence, one key per connected device, written when its socket opens
  and renewed every :data:`RENEW_S` by the process holding it, with a TTL of :data:`LEASE_S` (a dead
  process's keys expire by themselves); deleted on close only if it still names this process.
- ``<p>:node:<id>`` -> this process's heartbeat ``{node_id, started_at, sessions, last_heartbeat,
  subscribers}``, written every :data:`HEARTBEAT_S` with a TTL of :data:`NODE_TTL_S`, and
  ``<p>:nodes``, a sorted set of node ids scored by their last heartbeat (entries older than the TTL are
  removed at every heartbeat), for listing the live processes.
- ``<p>:ctl`` and ``<p>:ev``: two plain pub/sub channels. ``ctl`` carries the control messages (a
  socket opened, an invalidation, a command queued, an upload to cut off, a process joining or leaving
  the feed listeners); ``ev`` carries the events, batched (one PUBLISH per writer pass). Pub/sub and
  not streams: the events are live hints (a feed that misses some re-reads through REST; a lost
  control message only delays, see below), so nothing needs to be kept for a reader that is not there;
  Redis keeps nothing per message, and a subscriber that cannot keep up is disconnected by Redis's
  ``client-output-buffer-limit pubsub`` rather than growing its memory.

The SQL store stays the source of truth. A lost message delays and never loses: a device's socket is
still closed by the TTL of credentials (30 s), a queued command is still delivered by the periodic
sweep (``CommandService.sweep``) or on connect. While Redis is unreachable this process keeps serving
its own devices (acks do not depend on the bus); ``ping`` fails (``/readyz``); nothing is queued for
later (messages are dropped, not buffered without bound). When the subscription is back, this process
republishes the presence of the sockets it holds and sends :data:`~truckx_server.bus.RESYNC` to its
handlers (caches dropped, command queues swept): no restart is needed.

Cross-process replacement: every process announces each socket it opens on ``ctl``. Redis delivers
the messages of one channel to every subscriber in the same order, so every process sees the same
order of announcements; a process holding a socket of that IMEI whose own announcement it has seen
already (so it is older) closes it with 4409; one whose announcement has not come back yet (it is the
newer one) keeps it, and the other closes its own when this one's announcement arrives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import re
import time
from typing import Any, Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .bus import RESYNC, CommandQueued, Invalidation, Subscriber, UploadPreempt, node_json
from .errors import Unavailable
from .hub import Hub
from .models import format_time, utcnow
from .storage.retry import backoff
from .vocab import CLOSE_REPLACED

log = logging.getLogger("truckx.bus")

#: presence key TTL, and how often the process holding the socket renews it
LEASE_S = 30.0
RENEW_S = 10.0
#: heartbeat period and TTL: a process that stopped beating is gone after NODE_TTL_S
HEARTBEAT_S = 2.0
NODE_TTL_S = 10.0
#: outgoing messages waiting for the writer; past it new ones are dropped (counted in ``dropped``)
OUT_MAX = 100_000
#: messages per pipeline round trip
BATCH = 1000
#: the subscription is pinged when idle this long, and given up when nothing came back for PONG_TIMEOUT_S
PING_IDLE_S = 3.0
PONG_TIMEOUT_S = 10.0
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

#: delete the presence key only if it still names this process (a newer socket elsewhere owns it otherwise)
_CAD = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _s(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value if isinstance(value, str) else None


class RedisBus:
    clustered = True

    def __init__(self, hub: Hub, url: str, prefix: str = "truckx", node_id: str = "node",
                 started_at: dt.datetime | None = None, *, lease_s: float = LEASE_S, renew_s: float = RENEW_S,
                 heartbeat_s: float = HEARTBEAT_S, node_ttl_s: float = NODE_TTL_S, timeout_s: float = 2.0) -> None:
        if not PREFIX_RE.fullmatch(prefix):
            raise ValueError("bus prefix: 1-64 letters, digits and _ . : -")
        self.hub = hub
        self.node_id = node_id
        self.started_at = started_at or utcnow()
        self.prefix = prefix
        self.lease_s, self.renew_s = lease_s, renew_s
        self.heartbeat_s, self.node_ttl_s = heartbeat_s, node_ttl_s
        self.timeout_s = timeout_s
        self._ctl, self._ev = f"{prefix}:ctl", f"{prefix}:ev"
        self._nodes_key = f"{prefix}:nodes"
        # commands: one retry (a pooled connection that died during an outage); the subscription: none,
        # so that a lost connection surfaces here and is followed by a resync
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                               retry=Retry(NoBackoff(), 1))
        self._sub_client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                   retry=Retry(NoBackoff(), 0))
        self._subscribers: set[Subscriber] = set()
        self._invalidation: list[Invalidation] = []
        self._command_queued: CommandQueued | None = None
        self._preempt: UploadPreempt | None = None
        #: outgoing messages, sent in order by one writer task
        self._out: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = asyncio.Event()
        #: the subscription is up (messages are sent and received)
        self.connected = False
        self._first_attempt = asyncio.Event()
        #: per IMEI, announcements of sockets opened here that have not come back through Redis yet
        self._pending_open: dict[str, int] = {}
        #: other processes: monotonic expiry of their liveness, and their feed subscriber counts
        self._live: dict[str, float] = {}
        self._listeners: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: messages dropped (outage or full queue)
        self.dropped = 0

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for coro, name in ((self._listen(), "bus-listen"), (self._write(), "bus-write"),
                           (self._heartbeat(), "bus-heartbeat")):
            self._spawn(coro, name)
        # serve with the bus up when it can be had; an unreachable Redis is reported by /readyz and
        # joined when it comes back
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout_s * 2):
                await self._first_attempt.wait()
        if not self.connected:
            log.warning("bus: Redis unreachable at start; running alone until it answers")

    def _spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        self._closing = True
        if self.connected:
            self._enqueue(("pub", self._ctl, {"op": "bye"}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    while self._out and self.connected:
                        await asyncio.sleep(0.01)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    pipe = self._client.pipeline(transaction=False)
                    pipe.zrem(self._nodes_key, self.node_id)
                    pipe.delete(self._node_key(self.node_id))
                    await pipe.execute()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected = False
        for client in (self._sub_client, self._client):
            with contextlib.suppress(Exception):
                await client.aclose()

    async def ping(self) -> None:
        if not self.connected:
            raise Unavailable("the bus is not connected")
        async with asyncio.timeout(self.timeout_s):
            await self._client.ping()

    # -- keys ------------------------------------------------------------------------------------

    def _dev_key(self, imei: str) -> str:
        return f"{self.prefix}:dev:{imei}"

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    # -- outgoing --------------------------------------------------------------------------------

    def _enqueue(self, item: tuple[Any, ...]) -> bool:
        """Queue one message for the writer; False (dropped) while the bus is down or the queue full."""
        if not self.connected or len(self._out) >= OUT_MAX:
            self.dropped += 1
            return False
        self._out.append(item)
        self._wake.set()
        return True

    def _ctl_message(self, op: str, **fields: Any) -> tuple[Any, ...]:
        return ("pub", self._ctl, {"op": op, **fields})

    async def _write(self) -> None:
        """Send the queued messages in order, up to :data:`BATCH` per pipeline; events gathered in one
        PUBLISH per pass. A failed pass is dropped (the listener notices the outage and resyncs)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._out:
                batch = [self._out.popleft() for _ in range(min(BATCH, len(self._out)))]
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.dropped += len(batch)
                    self._unsent(batch)
                    log.debug("bus: %d messages not sent: %s", len(batch), type(exc).__name__)

    async def _send(self, batch: list[tuple[Any, ...]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        events: list[dict[str, Any]] = []
        for item in batch:
            kind = item[0]
            if kind == "ev":
                events.append(item[1])
            elif kind == "pub":
                pipe.publish(item[1], json.dumps({**item[2], "n": self.node_id}, separators=(",", ":"), default=str))
            elif kind == "open":
                imei = item[1]
                pipe.set(self._dev_key(imei), self.node_id, ex=int(self.lease_s))
                pipe.publish(self._ctl, json.dumps({"op": "open", "imei": imei, "n": self.node_id}, separators=(",", ":")))
            elif kind == "close":
                pipe.eval(_CAD, 1, self._dev_key(item[1]), self.node_id)
        if events:
            pipe.publish(self._ev, json.dumps({"n": self.node_id, "e": events}, separators=(",", ":"), default=str))
        async with asyncio.timeout(self.timeout_s * 2):
            await pipe.execute()

    def _unsent(self, batch: list[tuple[Any, ...]]) -> None:
        """Announcements that never went out will not come back: they no longer make a socket 'newer'."""
        for item in batch:
            if item[0] == "open":
                self._opened_echo(item[1])

    # -- incoming --------------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Keep the subscription up: subscribe, resync after a reconnection, dispatch messages, ping
        when idle; on any failure start over with backoff."""
        loop = asyncio.get_running_loop()
        delays = backoff(0.2, 5.0)
        first = True
        while True:
            pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self.timeout_s * 2):
                    await pubsub.subscribe(self._ctl, self._ev)
                    await pubsub.ping()  # answered after the subscriptions: they are in place
                    while (msg := await pubsub.get_message(timeout=self.timeout_s)) is None or msg["type"] != "pong":
                        pass
                    await self._client.ping()
                self._pending_open.clear()
                self.connected = True
                if not first:
                    log.warning("bus: connected again; republishing presence and resyncing")
                await self._resync(first)
                first = False
                delays = backoff(0.2, 5.0)
                self._first_attempt.set()
                last_heard = loop.time()
                pinged = False
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if msg is not None:
                        last_heard, pinged = now, False
                        if msg["type"] == "message":
                            self._dispatch(_s(msg["channel"]), msg["data"])
                        continue
                    if now - last_heard > PONG_TIMEOUT_S:
                        raise ConnectionError("the subscription went silent")
                    if not pinged and now - last_heard > PING_IDLE_S:
                        await pubsub.ping()
                        pinged = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("bus: lost Redis (%s); devices keep being served here", type(exc).__name__)
            finally:
                self.connected = False
                self._out.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self._first_attempt.set()
            await asyncio.sleep(next(delays))

    async def _resync(self, first: bool) -> None:
        """(Re)joined: republish the presence of every socket held here, beat at once; after an outage
        tell the handlers that messages may have been missed."""
        await self._renew_presence()
        with contextlib.suppress(Exception):
            await self._beat()
        if not first:
            self._invalidated(RESYNC, "")

    def _dispatch(self, channel: str | None, data: Any) -> None:
        try:
            msg = json.loads(data)
        except (ValueError, TypeError):
            return
        if not isinstance(msg, dict):
            return
        node = msg.get("n")
        if not isinstance(node, str):
            return
        if node != self.node_id:
            self._live[node] = time.monotonic() + self.node_ttl_s
        if channel == self._ev:
            if node != self.node_id and self._subscribers and isinstance(msg.get("e"), list):
                for event in msg["e"]:
                    if isinstance(event, dict):
                        self._deliver(event)
            return
        op = msg.get("op")
        if op == "open":
            imei = msg.get("imei")
            if not isinstance(imei, str):
                return
            if node == self.node_id:
                self._opened_echo(imei)
            elif imei in self.hub.sessions and not self._pending_open.get(imei):
                # the socket held here was announced before this one: it is the older, close it
                self.hub.hand_off(imei, CLOSE_REPLACED, "replaced by a newer connection")
            return
        if node == self.node_id:
            return
        if op == "inv" and isinstance(msg.get("kind"), str) and isinstance(msg.get("keys"), list):
            for key in msg["keys"]:
                if isinstance(key, str):
                    self._invalidated(msg["kind"], key)
        elif op == "cmd" and isinstance(msg.get("imei"), str) and self._command_queued is not None:
            self._spawn(self._queued_elsewhere(msg["imei"], {"id": msg.get("id"), "imei": msg["imei"]}))
        elif op == "listen" and isinstance(msg.get("count"), int):
            self._listeners[node] = msg["count"]
        elif op == "preempt" and msg.get("to") == self.node_id and self._preempt is not None:
            imei, name = msg.get("imei"), msg.get("name")
            if isinstance(imei, str) and isinstance(name, str):
                self._preempt(imei, name)
        elif op == "bye":
            self._live.pop(node, None)
            self._listeners.pop(node, None)

    async def _queued_elsewhere(self, imei: str, command: dict[str, Any]) -> None:
        assert self._command_queued is not None
        try:
            await self._command_queued(imei, command, None)
        except Exception as exc:
            log.warning("bus: delivering a command queued elsewhere failed: %s", type(exc).__name__)

    def _opened_echo(self, imei: str) -> None:
        left = self._pending_open.get(imei, 0) - 1
        if left > 0:
            self._pending_open[imei] = left
        else:
            self._pending_open.pop(imei, None)

    # -- heartbeat and presence renewal ----------------------------------------------------------

    async def _heartbeat(self) -> None:
        renew_every = max(1, round(self.renew_s / self.heartbeat_s))
        tick = 0
        while True:
            await asyncio.sleep(self.heartbeat_s)
            tick += 1
            if not self.connected:
                continue
            try:
                await self._beat()
                if tick % renew_every == 0:
                    await self._renew_presence()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("bus: heartbeat failed: %s", type(exc).__name__)

    def _node_info(self) -> dict[str, Any]:
        return {**node_json(self.node_id, self.started_at, len(self.hub.sessions), utcnow()),
                "subscribers": len(self._subscribers)}

    async def _beat(self) -> None:
        """Write this process's heartbeat, drop the dead from the node set, and learn who is alive and
        which processes have feed subscribers."""
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._node_key(self.node_id), json.dumps(self._node_info()), ex=int(self.node_ttl_s))
        pipe.zadd(self._nodes_key, {self.node_id: now})
        pipe.zremrangebyscore(self._nodes_key, "-inf", now - self.node_ttl_s)
        pipe.expire(self._nodes_key, int(self.node_ttl_s * 3))
        async with asyncio.timeout(self.timeout_s * 2):
            await pipe.execute()
        infos = await self._node_infos()
        expiry = time.monotonic() + self.node_ttl_s
        self._live = {info["node_id"]: expiry for info in infos if info["node_id"] != self.node_id}
        self._listeners = {info["node_id"]: int(info.get("subscribers") or 0) for info in infos
                           if info["node_id"] != self.node_id}

    async def _node_infos(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(self.timeout_s * 2):
            ids = [_s(i) for i in await self._client.zrangebyscore(self._nodes_key, time.time() - self.node_ttl_s, "+inf")]
            ids = [i for i in ids if i]
            values = await self._client.mget([self._node_key(i) for i in ids]) if ids else []
        out = []
        for raw in values:
            with contextlib.suppress(ValueError, TypeError):
                info = json.loads(raw) if raw else None
                if isinstance(info, dict) and isinstance(info.get("node_id"), str):
                    out.append(info)
        return out

    async def _renew_presence(self) -> None:
        imeis = list(self.hub.sessions)
        for i in range(0, len(imeis), BATCH):
            pipe = self._client.pipeline(transaction=False)
            for imei in imeis[i:i + BATCH]:
                pipe.set(self._dev_key(imei), self.node_id, ex=int(self.lease_s))
            async with asyncio.timeout(self.timeout_s * 2):
                await pipe.execute()

    def _live_nodes(self) -> set[str]:
        now = time.monotonic()
        return {node for node, expiry in self._live.items() if expiry > now}

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.add(callback)
        if len(self._subscribers) == 1:
            self._enqueue(self._ctl_message("listen", count=1))

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.discard(callback)
                if not self._subscribers:
                    self._enqueue(self._ctl_message("listen", count=0))
        return unsubscribe

    def _remote_listening(self) -> bool:
        live = self._live_nodes()
        return any(count > 0 and node in live for node, count in self._listeners.items())

    @property
    def active(self) -> bool:
        return bool(self._subscribers) or self._remote_listening()

    def _deliver(self, event: dict[str, Any]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break publishing
                log.exception("event subscriber failed")

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        event = {"type": event_type, "at": format_time(utcnow()), **data}
        if self._subscribers:
            self._deliver(event)
        # locations (the only high-volume kind) cross only while some other process has a listener
        if event_type != "location" or self._remote_listening():
            self._enqueue(("ev", event))

    # -- invalidation ----------------------------------------------------------------------------

    def on_invalidate(self, callback: Invalidation) -> None:
        self._invalidation.append(callback)

    def _invalidated(self, kind: str, key: str) -> None:
        for callback in self._invalidation:
            try:
                callback(kind, key)
            except Exception:
                log.exception("invalidation handler failed")

    def invalidate(self, kind: str, *keys: str) -> None:
        for key in keys:
            self._invalidated(kind, key)
        for i in range(0, len(keys), BATCH):
            self._enqueue(self._ctl_message("inv", kind=kind, keys=list(keys[i:i + BATCH])))

    # -- commands --------------------------------------------------------------------------------

    def on_command_queued(self, callback: CommandQueued) -> None:
        self._command_queued = callback

    async def command_queued(self, imei: str, command: dict[str, Any], hint: Any = None) -> None:
        """Delivered here at once when the socket is here; every other process hears of it too, so
        that the one holding the socket delivers it and any may read the queue when the device
        connects to it next."""
        self._enqueue(self._ctl_message("cmd", imei=imei, id=command.get("id")))
        if self._command_queued is not None:
            await self._command_queued(imei, command, hint if imei in self.hub.sessions else None)

    # -- presence --------------------------------------------------------------------------------

    def session_opened(self, imei: str) -> None:
        if self._enqueue(("open", imei)):
            if len(self._pending_open) >= OUT_MAX:  # announcements that never came back (bounded anyway)
                self._pending_open.clear()
            self._pending_open[imei] = self._pending_open.get(imei, 0) + 1

    def session_closed(self, imei: str) -> None:
        self._enqueue(("close", imei))

    async def online(self, imeis: Sequence[str]) -> set[str]:
        sessions = self.hub.sessions
        here = {imei for imei in imeis if imei in sessions}
        rest = [imei for imei in imeis if imei not in here]
        if not rest or not self.connected:
            return here
        try:
            async with asyncio.timeout(self.timeout_s):
                values = await self._client.mget([self._dev_key(imei) for imei in rest])
        except Exception:
            return here
        live = self._live_nodes()
        return here | {imei for imei, node in zip(rest, values) if _s(node) in live}

    # -- nodes -----------------------------------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        if not self.connected:
            raise Unavailable("the bus is unavailable; try again")
        try:
            infos = await self._node_infos()
        except Exception as exc:
            raise Unavailable("the bus is unavailable; try again") from exc
        # this process as it is now; the others as of their last heartbeat
        infos = [info for info in infos if info["node_id"] != self.node_id] + [self._node_info()]
        fields = ("node_id", "started_at", "sessions", "last_heartbeat")
        return sorted(({k: info.get(k) for k in fields} for info in infos), key=lambda n: n["node_id"])

    def upload_preempt(self, node_id: str, imei: str, name: str) -> None:
        self._enqueue(self._ctl_message("preempt", to=node_id, imei=imei, name=name))

    def on_upload_preempt(self, callback: UploadPreempt) -> None:
        self._preempt = callback
