"""Admin-plane users: login (rate-limited), the check that a token's user still exists with its role
(cached briefly), and managing accounts. The first start creates ``admin`` with a random password."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

from .. import auth
from ..bus import RESYNC, Bus
from ..config import Secret
from ..errors import Conflict, InvalidArgument, NotFound, Unauthorized
from ..models import format_time, utcnow
from ..ratelimit import MAX_SUBJECT_CHARS, LoginGuard, address_key, login_key
from ..storage.sql.users import UserRows
from ..vocab import ROLE_ADMIN, ROLES

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
USERNAME_MAX = MAX_SUBJECT_CHARS
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
#: password hashes (argon2id, 64 MiB each) computed at once; the others wait their turn
HASHING_CONCURRENCY = 2
#: how long a user check (the user exists with the token's role) is reused. A change through the bus
#: takes effect at once on every process; without one, within this bound.
CHECK_TTL_S = 3.0
CHECK_CACHE_MAX = 10_000
#: invalidation kind on the bus
CHANGED = "user.changed"


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"username": row["username"], "role": row["role"], "created_at": format_time(row.get("created_at"))}


class UserChecks:
    """username -> (role, monotonic expiry) of recent successful checks, bounded. ``generation`` moves
    with every change, so a check read before a change is not cached after it."""

    def __init__(self, ttl_s: float = CHECK_TTL_S, max_entries: int = CHECK_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, tuple[str, float]] = {}

    def fresh(self, username: str, role: str) -> bool:
        hit = self._entries.get(username)
        return hit is not None and hit[1] > time.monotonic() and hit[0] == role

    def put(self, username: str, role: str, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[username] = (role, time.monotonic() + self.ttl_s)

    def forget(self, username: str) -> None:
        self.generation += 1
        self._entries.pop(username, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


class UserService:
    def __init__(self, rows: UserRows, bus: Bus, tokens: auth.TokenService, login_rate_per_min: int) -> None:
        self.rows = rows
        self.bus = bus
        self.tokens = tokens
        self.login_guard = LoginGuard(login_rate_per_min)
        self._hashing = asyncio.Semaphore(HASHING_CONCURRENCY)
        self.checks = UserChecks()
        bus.on_invalidate(self._invalidated)

    async def bootstrap_admin(self, data_dir: Path, preset: Secret | None) -> str | None:
        """Create ``admin`` when there is no user at all; returns the generated password (to print
        once), None when none was generated."""
        if await self.rows.count():
            return None
        password = preset.get() if preset else auth.secrets.token_urlsafe(18)
        try:
            await self.rows.create("admin", auth.hash_password(password), ROLE_ADMIN, utcnow())
        except Conflict:  # another process created it first
            return None
        auth.write_private(data_dir / "admin-password", password + "\n")
        return None if preset else password

    # -- login and token checks ------------------------------------------------------------------

    async def _hash_call(self, fn: Any, *args: Any) -> Any:
        """Run an argon2 call on a worker thread, at most HASHING_CONCURRENCY at once (each takes 64 MiB
        and a core for tens of milliseconds: unbounded, a burst of logins is a memory and CPU attack)."""
        async with self._hashing:
            return await asyncio.to_thread(fn, *args)

    async def login(self, username: Any, password: Any, address: str) -> tuple[str, dt.datetime, str]:
        """A token for a user's password. Sizes are checked first (no username or password longer than
        one may be gets to the limiter, the database or argon2); then ``login_guard`` (per username and
        address, per address, a per-username brake; see ``ratelimit.LoginGuard``)."""
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise InvalidArgument("username and password are required")
        if len(username) > USERNAME_MAX:
            raise InvalidArgument(f"username must be at most {USERNAME_MAX} characters")
        if len(password) > PASSWORD_MAX:
            raise InvalidArgument(f"password must be at most {PASSWORD_MAX} characters")
        subject, where = login_key(username), address_key(address)
        self.login_guard.begin(subject, where)
        user = await self.rows.get(username)
        ok = await self._hash_call(auth.check_password, password, user["password_hash"] if user else None)
        if not ok or user is None:
            self.login_guard.failed(subject, where)
            raise Unauthorized("wrong username or password")
        self.login_guard.succeeded(subject, where)
        token, expires = self.tokens.issue(user["username"], user["role"])
        return token, expires, user["role"]

    async def check(self, principal: auth.Principal | None) -> None:
        """An admin token is honoured only while its user exists with that role: deleting a user
        revokes its tokens at once."""
        if principal is None or principal.is_device:
            return
        if self.checks.fresh(principal.sub, principal.role):
            return
        generation = self.checks.generation
        user = await self.rows.get(principal.sub)
        if user is None or user["role"] != principal.role:
            self.checks.forget(principal.sub)
            raise Unauthorized("this user no longer exists or its role changed; log in again")
        self.checks.put(principal.sub, user["role"], generation)

    def _invalidated(self, kind: str, username: str) -> None:
        if kind == CHANGED:
            self.checks.forget(username)
        elif kind == RESYNC:
            self.checks.clear()

    # -- accounts --------------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        return [user_json(u) for u in await self.rows.list()]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        username, password, role = body.get("username"), body.get("password"), body.get("role", "viewer")
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise InvalidArgument("username must be 1-64 characters: letters, digits and . _ @ - "
                                  "(starting with a letter or digit)")
        if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise InvalidArgument(f"password must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters")
        if role not in ROLES:
            raise InvalidArgument("role must be " + " or ".join(ROLES))
        if await self.rows.get(username) is not None:
            raise Conflict(f"user {username!r} exists already")
        hashed = await self._hash_call(auth.hash_password, password)
        now = utcnow()
        self.bus.invalidate(CHANGED, username)
        await self.rows.create(username, hashed, role, now)
        return user_json({"username": username, "role": role, "created_at": now})

    async def delete(self, actor: str, username: str) -> None:
        if username == actor:
            raise Conflict("you cannot delete your own account")
        self.bus.invalidate(CHANGED, username)  # before and after: a check running meanwhile caches nothing
        outcome = await self.rows.delete(username)
        self.bus.invalidate(CHANGED, username)
        if outcome == "missing":
            raise NotFound(f"no user {username!r}")
        if outcome == "last_admin":
            raise Conflict("cannot delete the last admin")
