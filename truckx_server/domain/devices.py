"""Devices: registration, login and token checks (with the credential cache), the admin's device list,
rename/disable/rotate, and the device's live session on this process (online, last_seen)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Callable, Sequence

from .. import auth, paging
from ..bus import RESYNC, Bus
from ..config import Secret
from ..errors import Forbidden, InvalidArgument, NotFound, Unauthorized
from ..hub import Hub, Session
from ..models import AuditEntry, LocationPoint, OutboxEvent, format_time, utcnow, validate_imei
from ..ratelimit import LoginGuard, address_key
from ..storage.base import LocationStore
from ..storage.sql.devices import DeviceRows
from ..vocab import (CLOSE_CREDENTIALS_CHANGED, CLOSE_DISABLED, DEVICE_CHANGED, DEVICE_DISABLED, DEVICE_ROTATED,
                     ROLE_DEVICE)

log = logging.getLogger("truckx.devices")

#: how long another process's change to a device (disable, rotate) may take to be seen here when no
#: bus message reaches this process (every change made through a bus is applied at once)
AUTH_TTL_S = 30.0
AUTH_CACHE_MAX = 200_000
MAX_REGISTER = 10_000
NAME_MAX = 128
#: device secrets are 43 characters (32 random bytes, base64url); anything far longer is refused unread
SECRET_MAX = 256
#: compared against when the IMEI is not registered, so both paths do the same work
_NO_DEVICE_HASH = "0" * 64
#: devices checked per query when the sessions held here are checked again after a bus outage
RECHECK_BATCH = 500
#: devices whose presence is renewed (or checked for device.offline) per query
PRESENCE_BATCH = 500
#: invalidation kinds on the bus (vocab.py: other services hear them too)
DISABLED, ROTATED, CHANGED = DEVICE_DISABLED, DEVICE_ROTATED, DEVICE_CHANGED


def device_json(row: dict[str, Any], online: bool, last_seen: dt.datetime | None,
                last_location: LocationPoint | None) -> dict[str, Any]:
    return {"imei": row["imei"], "name": row.get("name"), "enabled": bool(row["enabled"]), "online": online,
            "last_seen": format_time(last_seen), "created_at": format_time(row.get("created_at")),
            "last_location": last_location.to_json() if last_location is not None else None}


def _name(value: Any, nullable_hint: str = "") -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > NAME_MAX):
        raise InvalidArgument(f"name must be a string of at most {NAME_MAX} characters{nullable_hint}")
    return value


def _later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The later of two times (this process's last_seen and the stored one, which another process holding
    the device's socket keeps moving)."""
    return b if a is None or (b is not None and b > a) else a


def presence_event(online: bool, at: dt.datetime) -> Callable[[dict[str, Any]], OutboxEvent]:
    """The webhook event ``device.online`` / ``device.offline``: ``{imei, name, online, last_seen}``."""
    def make(row: dict[str, Any]) -> OutboxEvent:
        return OutboxEvent("device.online" if online else "device.offline",
                           {"imei": row["imei"], "name": row.get("name"), "online": online,
                            "last_seen": format_time(_later(row.get("last_seen"), row.get("presence_at")))}, at)
    return make


class AuthCache:
    """Device credentials ``{imei, secret_hash, enabled, secret_version}`` (or None: not registered),
    read on every device login and WebSocket handshake. Entries expire after ``ttl_s``; every change
    drops its entry at once (through the bus, on every process); bounded to ``max_entries``."""

    def __init__(self, ttl_s: float = AUTH_TTL_S, max_entries: int = AUTH_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}
        #: moves with every forget: a row read before a change is not cached after it
        self.generation = 0

    def get(self, imei: str) -> tuple[bool, dict[str, Any] | None]:
        hit = self._entries.get(imei)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def put(self, imei: str, row: dict[str, Any] | None, generation: int | None = None) -> None:
        if generation is not None and generation != self.generation:
            return
        now = time.monotonic()
        if len(self._entries) >= self.max_entries and imei not in self._entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[imei] = (now + self.ttl_s, row)

    def forget(self, imeis: Sequence[str]) -> None:
        self.generation += 1
        for imei in imeis:
            self._entries.pop(imei, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


class DeviceService:
    def __init__(self, rows: DeviceRows, locations: LocationStore, hub: Hub, bus: Bus,
                 tokens: auth.TokenService, device_key: Secret, login_rate_per_min: int = 10) -> None:
        self.rows = rows
        self.locations = locations
        self.hub = hub
        self.bus = bus
        self.tokens = tokens
        self.device_key = device_key
        self.auth_cache = AuthCache()
        self.login_guard = LoginGuard(login_rate_per_min)
        self._rechecks: set[asyncio.Task[int]] = set()  # after a bus outage
        self._presence_tasks: set[asyncio.Task[None]] = set()
        bus.on_invalidate(self._invalidated)

    async def warm(self) -> int:
        """Fill the credential cache at start: after a restart every device logs in again within seconds
        (a reconnect storm), and each login would otherwise be a query. Returns rows loaded."""
        rows = await self.rows.all_auth(AUTH_CACHE_MAX // 2)
        for row in rows:
            self.auth_cache.put(row["imei"], row)
        return len(rows)

    # -- credentials -----------------------------------------------------------------------------

    async def _auth(self, imei: str) -> dict[str, Any] | None:
        hit, row = self.auth_cache.get(imei)
        if hit:
            return row
        generation = self.auth_cache.generation
        row = await self.rows.auth(imei)
        self.auth_cache.put(imei, row, generation)
        return row

    async def login(self, imei: Any, secret: Any, address: str = "") -> tuple[str, dt.datetime]:
        """A device token for the IMEI's secret, rate-limited per IMEI and address (``LoginGuard``).

        Registered or not, an IMEI costs the same: the guard keys on any valid IMEI alike, then one
        query and one HMAC, whatever the answer. The credential cache is not read here, because whether
        an IMEI is cached depends on whether it is registered (the cache is warmed with every device at
        start), and a hit answers faster than a query; nor is a "not registered" answer cached."""
        imei = validate_imei(imei)
        if not isinstance(secret, str) or not secret:
            raise InvalidArgument("secret is required")
        if len(secret) > SECRET_MAX:
            raise InvalidArgument(f"secret must be at most {SECRET_MAX} characters")
        where = address_key(address)
        self.login_guard.begin(imei, where)
        device = await self.rows.auth(imei)
        stored = device["secret_hash"] if device else _NO_DEVICE_HASH
        if not auth.check_device_secret(self.device_key, secret, stored) or device is None:
            self.login_guard.failed(imei, where)
            raise Unauthorized("unknown IMEI or wrong secret")
        self.login_guard.succeeded(imei, where)
        self.auth_cache.put(imei, device)  # fresh credentials for the WebSocket handshake that follows
        if not device["enabled"]:
            raise Forbidden("this device is disabled")
        return self.tokens.issue(imei, ROLE_DEVICE, device["secret_version"])

    async def authenticate(self, principal: auth.Principal) -> dict[str, Any]:
        """The device behind a device token, refusing unknown, rotated-away or disabled ones."""
        device = await self._auth(principal.sub)
        if device is None:
            raise Unauthorized("unknown device")
        if principal.version != device["secret_version"]:
            raise Unauthorized("the device secret was rotated; log in again")
        if not device["enabled"]:
            raise Forbidden("this device is disabled")
        return device

    def _invalidated(self, kind: str, imei: str) -> None:
        """A device changed (on this process or another): drop its credentials and, when it was
        disabled or its secret rotated, close its live session here. After a bus outage (``RESYNC``)
        every cached credential goes: changes made meanwhile elsewhere were not heard of."""
        if kind == RESYNC:
            self.auth_cache.clear()
            task = asyncio.get_running_loop().create_task(self._recheck_logged())
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)
            return
        if not kind.startswith("device."):
            return
        self.auth_cache.forget((imei,))
        if kind == DISABLED:
            self.hub.disconnect(imei, CLOSE_DISABLED, "device disabled")
        elif kind == ROTATED:
            self.hub.disconnect(imei, CLOSE_CREDENTIALS_CHANGED, "device secret rotated")

    async def recheck_sessions(self) -> int:
        """Check the devices whose sockets are held here against the store, and close those disabled,
        deleted or rotated meanwhile (after a bus outage, when their invalidation may have been lost).
        Returns how many were closed."""
        closed = 0
        imeis = list(self.hub.sessions)
        for i in range(0, len(imeis), RECHECK_BATCH):
            rows = await self.rows.auth_many(imeis[i:i + RECHECK_BATCH])
            for imei in imeis[i:i + RECHECK_BATCH]:
                session = self.hub.sessions.get(imei)
                row = rows.get(imei)
                if session is None:
                    continue
                if row is None or not row["enabled"]:
                    closed += self.hub.disconnect(imei, CLOSE_DISABLED, "device disabled")
                elif getattr(session, "secret_version", row["secret_version"]) != row["secret_version"]:
                    closed += self.hub.disconnect(imei, CLOSE_CREDENTIALS_CHANGED, "device secret rotated")
        return closed

    async def _recheck_logged(self) -> int:
        try:
            return await self.recheck_sessions()
        except Exception as exc:
            log.warning("session recheck failed: %s", type(exc).__name__)
            return 0

    # -- registration and changes ----------------------------------------------------------------

    async def register(self, entries: Sequence[Any], actor: str) -> list[dict[str, Any]]:
        """Register devices ``{imei, name?}`` all or none; returns each with its secret (shown once)."""
        if not entries:
            raise InvalidArgument("no devices given")
        if len(entries) > MAX_REGISTER:
            raise InvalidArgument(f"at most {MAX_REGISTER} devices per call")
        seen: set[str] = set()
        rows, out = [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise InvalidArgument(f"devices[{i}] must be an object")
            imei = validate_imei(entry.get("imei"))
            if imei in seen:
                raise InvalidArgument(f"IMEI {imei} is given twice")
            seen.add(imei)
            name = _name(entry.get("name"))
            secret = auth.new_device_secret()
            rows.append({"imei": imei, "name": name, "secret_hash": auth.hash_device_secret(self.device_key, secret)})
            out.append({"imei": imei, "name": name, "enabled": True, "secret": secret})
        now = utcnow()
        audit = [AuditEntry(actor, "device.register", r["imei"], {"name": r["name"]} if r["name"] else None, at=now)
                 for r in rows]
        try:
            await self.rows.create(rows, now, audit)
        finally:
            self.bus.invalidate(CHANGED, *seen)  # a cached "not registered" must not outlive it
        return out

    async def update(self, imei: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        imei = validate_imei(imei)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = _name(body["name"], ", or null")
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise InvalidArgument("enabled must be true or false")
            values["enabled"] = body["enabled"]
        if not values:
            raise InvalidArgument("give name and/or enabled")
        audit = []
        if "name" in values:
            audit.append(AuditEntry(actor, "device.rename", imei, {"name": values["name"]}))
        if "enabled" in values:
            audit.append(AuditEntry(actor, "device.enable" if values["enabled"] else "device.disable", imei))
        try:
            found = await self.rows.update(imei, audit, **values)
        finally:
            # its tokens are refused from now on, and a disabled device's live session is closed
            self.bus.invalidate(DISABLED if values.get("enabled") is False else CHANGED, imei)
        if not found:
            raise NotFound(f"device {imei} is not registered")
        return await self.get(imei)

    async def rotate_secret(self, imei: str, actor: str) -> dict[str, Any]:
        imei = validate_imei(imei)
        secret = auth.new_device_secret()
        try:
            found = await self.rows.rotate_secret(imei, auth.hash_device_secret(self.device_key, secret),
                                                  AuditEntry(actor, "device.rotate_secret", imei))
        finally:
            # tokens issued with the old secret are refused from now on; the live session goes too
            self.bus.invalidate(ROTATED, imei)
        if not found:
            raise NotFound(f"device {imei} is not registered")
        return {"imei": imei, "secret": secret}

    # -- reading ---------------------------------------------------------------------------------

    async def require(self, imei: str) -> dict[str, Any]:
        """The device row; 404 when ``imei`` is not registered."""
        row = await self.rows.get(imei)
        if row is None:
            raise NotFound(f"device {imei} is not registered")
        return row

    async def _items(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        imeis = [r["imei"] for r in rows]
        latest = {p.imei: p for p in await self.locations.latest(imeis)}
        online = await self.bus.online(imeis)
        seen = self.hub.last_seen
        return [device_json(r, r["imei"] in online, _later(seen.get(r["imei"]), r.get("last_seen")),
                            latest.get(r["imei"])) for r in rows]

    async def list(self, limit: int, cursor: str | None) -> dict[str, Any]:
        after = paging.decode(cursor, paging.text)
        page = await paging.keyset(lambda n: self.rows.page(n, after[0] if after else None), limit,
                                   lambda r: [r["imei"]])
        return {"items": await self._items(page.items), "next_cursor": page.next_cursor}

    async def get(self, imei: str) -> dict[str, Any]:
        row = await self.require(validate_imei(imei))
        return (await self._items([row]))[0]

    # -- live sessions (this process) ------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        """A device's WebSocket is open here: it replaces an older one (closed with 4409)."""
        replaced = self.hub.register(session)
        self.bus.session_opened(session.imei)
        self._presence_soon(self._presence_opened(session.imei))
        if not replaced:
            self.bus.publish("device_status", {"imei": session.imei, "online": True})

    def session_closed(self, session: Session) -> None:
        if self.hub.unregister(session):
            self.bus.session_closed(session.imei)
            self._presence_soon(self._presence_closed(session.imei))
            self.bus.publish("device_status", {"imei": session.imei, "online": False})

    # -- presence for webhooks: device.online / device.offline ----------------------------------
    # The durable state is two columns of the device (``presence``: what was announced, ``presence_at``:
    # when a socket was last known open). A connection announces ``online`` unless that is what was
    # announced last (a short drop sends nothing); every process renews ``presence_at`` of the sockets
    # it holds (:meth:`presence_heartbeat`), and any process's sweep (:meth:`offline_sweep`) announces
    # ``offline`` for a device not seen for ``offline_after_s`` that no process holds. Each transition is
    # one conditional UPDATE with its outbox event: announced once, whichever process makes it.

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Shutdown: let the presence writes of the sockets just closed finish (before the store closes)."""
        if self._presence_tasks:
            await asyncio.wait(list(self._presence_tasks), timeout=timeout_s)

    def _presence_soon(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._presence_tasks.add(task)
        task.add_done_callback(self._presence_tasks.discard)

    async def _presence_opened(self, imei: str) -> None:
        try:
            now = utcnow()
            await self.rows.presence_seen([imei], now, presence_event(True, now))
        except Exception as exc:  # the next heartbeat tries again
            log.warning("could not record a device's presence: %s", type(exc).__name__)

    async def _presence_closed(self, imei: str) -> None:
        try:
            await self.rows.presence_closed(imei, utcnow())
        except Exception as exc:  # presence_at keeps its last renewal: offline a little sooner
            log.warning("could not record a device's disconnection: %s", type(exc).__name__)

    async def presence_heartbeat(self) -> int:
        """Renew the presence of every device whose socket is held here (announcing ``online`` where a
        connection's own write was lost). Returns devices announced online."""
        imeis = sorted(self.hub.sessions)
        announced = 0
        for i in range(0, len(imeis), PRESENCE_BATCH):
            now = utcnow()
            announced += len(await self.rows.presence_seen(imeis[i:i + PRESENCE_BATCH], now, presence_event(True, now)))
        return announced

    async def offline_sweep(self, offline_after_s: float) -> list[str]:
        """Announce ``device.offline`` for devices announced online that no process has held a socket of
        for ``offline_after_s`` (a device the bus still knows as connected somewhere is left alone).
        Returns the IMEIs announced."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=offline_after_s)
        stale = await self.rows.presence_stale(cutoff, PRESENCE_BATCH)
        if not stale:
            return []
        connected = await self.bus.online(stale)
        return await self.rows.presence_gone([i for i in stale if i not in connected], cutoff,
                                             presence_event(False, now))

    async def save_last_seen(self) -> None:
        """Persist the last_seen times gathered since the previous call (housekeeping, shutdown)."""
        await self.rows.touch(self.hub.take_dirty_seen())
