"""Browser sessions of the fleet console: sign-in sets a cookie naming a server-side session; the cookie
authenticates every admin-plane call like a bearer token does, and signing out revokes the session on
every process.

- Sign-in is the users' login (same password check, same rate limits): the token it issues is read back
  into its :class:`~truckx_server.auth.Principal` (user, role, and whatever else a token carries) and
  that principal is what the session stores and hands out. So a request with the cookie goes through the
  very checks a request with the token would: the role rules, then ``users.check`` (the user still
  exists with that role, and anything that check learns to look at).
- The cookie is 32 random bytes; the SQL store keeps only its SHA-256, so reading the database gives no
  usable cookie. A session lasts as long as an admin token (``admin_token_ttl_s``).
- Each process caches a session it has read for :data:`CACHE_TTL_S` (bounded). Signing out deletes the
  row and sends ``session.revoked`` through the bus, so every process drops its copy and closes the
  event feeds opened with it at once; without a cluster bus the cache bounds how long another process
  could still accept it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
from typing import Any, Awaitable, Callable, Protocol

from .. import auth
from ..bus import Bus
from ..errors import Unauthorized
from ..models import format_time, utcnow
from ..storage.sql.sessions import SessionRows
from ..vocab import ROLES

log = logging.getLogger("truckx.sessions")

#: the cookie's name (the contract's)
COOKIE = "truckx_session"
#: invalidation kind on the bus; the key is the session's id (the SHA-256 of its cookie)
REVOKED = "session.revoked"
CACHE_TTL_S = 3.0
CACHE_MAX = 10_000
#: what ``secrets.token_urlsafe(32)`` makes: anything else is not one of ours (no store lookup)
_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class Login(Protocol):
    """The users' login: ``(token, expires_at, role)``, rate-limited, raising on a wrong password."""

    def __call__(self, username: Any, password: Any, address: str) -> Awaitable[tuple[str, dt.datetime, str]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    #: SHA-256 (hex) of the cookie: the row's key, and what revocation names
    id: str
    principal: auth.Principal
    expires_at: dt.datetime


def session_json(username: str, role: str, expires_at: dt.datetime | None) -> dict[str, Any]:
    return {"username": username, "role": role, "expires_at": format_time(expires_at)}


def session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def _principal(data: Any) -> auth.Principal:
    """The stored principal back as one; a row that does not make one is not a session."""
    fields = {f.name for f in dataclasses.fields(auth.Principal)}
    if not isinstance(data, dict) or not isinstance(data.get("sub"), str) or data.get("role") not in ROLES:
        raise Unauthorized("not signed in")
    try:
        return auth.Principal(**{k: v for k, v in data.items() if k in fields})
    except TypeError:
        raise Unauthorized("not signed in") from None


class SessionService:
    def __init__(self, rows: SessionRows, bus: Bus, tokens: auth.TokenService, login: Login) -> None:
        self.rows = rows
        self.bus = bus
        self.tokens = tokens
        self.login = login
        #: session id -> (session, monotonic expiry of this copy)
        self._cache: dict[str, tuple[Session, float]] = {}
        #: moves with every revocation, so that a read racing one caches nothing
        self._generation = 0
        #: session id -> what to do when it ends (close the event feeds opened with it); one per feed
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        bus.on_invalidate(self._invalidated)

    async def sign_in(self, username: Any, password: Any, address: str) -> tuple[str, Session]:
        """``(cookie, session)`` for a right password (the users' login, rate limits included)."""
        token, expires_at, _role = await self.login(username, password, address)
        principal = self.tokens.verify(token)
        cookie = secrets.token_urlsafe(32)
        session = Session(session_id(cookie), principal, expires_at)
        await self.rows.create(session.id, principal.sub, dataclasses.asdict(principal), utcnow(), expires_at)
        return cookie, session

    async def find(self, cookie: str | None) -> Session:
        """The live session a cookie names; :class:`Unauthorized` otherwise."""
        if not cookie or not _COOKIE_RE.fullmatch(cookie):
            raise Unauthorized("not signed in")
        sid = session_id(cookie)
        hit = self._cache.get(sid)
        if hit is not None and hit[1] > time.monotonic():
            session = hit[0]
        else:
            generation = self._generation
            row = await self.rows.get(sid)
            if row is None:
                raise Unauthorized("this session has ended; sign in again")
            session = Session(sid, _principal(row["principal"]), row["expires_at"])
            if generation == self._generation:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[sid] = (session, time.monotonic() + CACHE_TTL_S)
        if session.expires_at <= utcnow():
            raise Unauthorized("this session has expired; sign in again")
        return session

    async def sign_out(self, session: Session) -> None:
        """End ``session`` on every process."""
        self.bus.invalidate(REVOKED, session.id)  # before and after: a read running meanwhile caches nothing
        await self.rows.delete(session.id)
        self.bus.invalidate(REVOKED, session.id)

    async def sign_out_cookie(self, cookie: str | None) -> None:
        """End the session a cookie names, if it is one (a new sign-in replacing an old one)."""
        if cookie and _COOKIE_RE.fullmatch(cookie):
            sid = session_id(cookie)
            self.bus.invalidate(REVOKED, sid)
            await self.rows.delete(sid)
            self.bus.invalidate(REVOKED, sid)

    def on_end(self, session: Session, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once when ``session`` is signed out (on any process); returns the function
        that stops watching."""
        self._watchers.setdefault(session.id, set()).add(callback)

        def stop() -> None:
            callbacks = self._watchers.get(session.id)
            if callbacks is not None:
                callbacks.discard(callback)
                if not callbacks:
                    del self._watchers[session.id]
        return stop

    async def purge_expired(self) -> int:
        return await self.rows.delete_expired(utcnow())

    def _invalidated(self, kind: str, key: str) -> None:
        if kind == REVOKED:
            self._generation += 1
            self._cache.pop(key, None)
            for callback in list(self._watchers.pop(key, ())):
                try:
                    callback()
                except Exception:
                    log.exception("a session watcher failed")
