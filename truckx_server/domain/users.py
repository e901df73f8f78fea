"""Admin-plane users: login (rate-limited), the check that a token is still good (its user exists with
the token's role and token version; cached briefly), and managing accounts: create, delete, change a
password or a role. The first start creates ``admin`` with a random password.

Revocation: every user row has a ``token_version`` (``auth.new_token_version``), carried in its tokens as
``ver``. Deleting the user, changing its password or its role draws a new one, so every token issued
before is refused, and tells every process through ``bus.invalidate(USER_REVOKED, username)``: each drops
its cached check and closes the user's event feeds (``domain/events.py``). A user created again under the
same name gets a fresh random version, never its former self's."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from .. import auth
from ..bus import RESYNC, Bus
from ..config import Secret
from ..errors import Conflict, Forbidden, InvalidArgument, NotFound, Unauthorized
from ..models import AuditEntry, format_time, utcnow
from ..ratelimit import MAX_SUBJECT_CHARS, LoginGuard, address_key, login_key
from ..storage.sql.users import UserRows
from ..vocab import ROLE_ADMIN, ROLES, USER_REVOKED

T = TypeVar("T")

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
USERNAME_MAX = MAX_SUBJECT_CHARS
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
#: password hashes (argon2id, 64 MiB each) computed at once; the others wait their turn
HASHING_CONCURRENCY = 2
#: how long a user check (the user exists with the token's role and version) is reused. A change
#: through the bus takes effect at once on every process; without one, within this bound.
CHECK_TTL_S = 3.0
CHECK_CACHE_MAX = 10_000
#: invalidation kind on the bus: a user was created (drop any cached check of that name)
CHANGED = "user.changed"


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"username": row["username"], "role": row["role"], "created_at": format_time(row.get("created_at"))}


def _password(value: Any, field: str = "password") -> str:
    if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidArgument(f"{field} must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


def _role(value: Any) -> str:
    if value not in ROLES:
        raise InvalidArgument("role must be " + ", ".join(ROLES[:-1]) + " or " + ROLES[-1])
    return value  # type: ignore[no-any-return]


class UserChecks:
    """username -> (role, token version, monotonic expiry) of recent successful checks, bounded.
    ``generation`` moves with every change, so a check read before a change is not cached after it."""

    def __init__(self, ttl_s: float = CHECK_TTL_S, max_entries: int = CHECK_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, tuple[str, int, float]] = {}

    def fresh(self, username: str, role: str, version: int) -> bool:
        hit = self._entries.get(username)
        return hit is not None and hit[2] > time.monotonic() and hit[0] == role and hit[1] == version

    def put(self, username: str, role: str, version: int, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[username] = (role, version, time.monotonic() + self.ttl_s)

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
            await self.rows.create("admin", auth.hash_password(password), ROLE_ADMIN, utcnow(),
                                   auth.new_token_version())
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
        token, expires = self.tokens.issue(user["username"], user["role"], int(user["token_version"]))
        return token, expires, user["role"]

    @property
    def generation(self) -> int:
        """Moves whenever any user changes on this process (or a change reaches it through the bus):
        a token checked before can be checked again when it moved (``handlers/events.py``)."""
        return self.checks.generation

    async def check(self, principal: auth.Principal | None) -> None:
        """An admin token is honoured only while its user exists with that role and token version:
        deleting a user, changing its password or role revokes its tokens at once."""
        if principal is None or principal.is_device:
            return
        if principal.version is None:
            raise Unauthorized("this token predates token versions; log in again")
        if self.checks.fresh(principal.sub, principal.role, principal.version):
            return
        generation = self.checks.generation
        user = await self.rows.get(principal.sub)
        if user is None or user["role"] != principal.role or int(user["token_version"]) != principal.version:
            raise Unauthorized("this token was revoked (the user was deleted, or its password or role "
                               "changed); log in again")
        self.checks.put(principal.sub, user["role"], principal.version, generation)

    def _invalidated(self, kind: str, username: str) -> None:
        if kind in (CHANGED, USER_REVOKED):
            self.checks.forget(username)
        elif kind == RESYNC:
            self.checks.clear()

    async def _revoking(self, username: str, change: Awaitable[T], changed: Callable[[T], bool]) -> T:
        """Run a store change of ``username``; then every token of that user issued before is revoked
        (tell every process), unless the outcome says nothing changed. An error revokes too: it may hide
        a change that was committed."""
        revoke = True
        try:
            outcome = await change
            revoke = changed(outcome)
            return outcome
        finally:
            if revoke:
                self.bus.invalidate(USER_REVOKED, username)

    # -- accounts --------------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        return [user_json(u) for u in await self.rows.list()]

    async def me(self, principal: auth.Principal) -> dict[str, Any]:
        """The caller's own account (its token was checked already)."""
        user = await self.rows.get(principal.sub)
        if user is None:
            raise Unauthorized("this user no longer exists; log in again")
        return user_json(user)

    async def create(self, body: dict[str, Any], actor: str) -> dict[str, Any]:
        username, role = body.get("username"), body.get("role", "viewer")
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise InvalidArgument("username must be 1-64 characters: letters, digits and . _ @ - "
                                  "(starting with a letter or digit)")
        password = _password(body.get("password"))
        role = _role(role)
        if await self.rows.get(username) is not None:
            raise Conflict(f"user {username!r} exists already")
        hashed = await self._hash_call(auth.hash_password, password)
        now = utcnow()
        self.bus.invalidate(CHANGED, username)
        await self.rows.create(username, hashed, role, now, auth.new_token_version(),
                               AuditEntry(actor, "user.create", username, {"role": role}, at=now))
        return user_json({"username": username, "role": role, "created_at": now})

    async def delete(self, actor: str, username: str) -> None:
        if username == actor:
            raise Conflict("you cannot delete your own account")
        self.bus.invalidate(CHANGED, username)  # a check running meanwhile caches nothing
        outcome = await self._revoking(username, self.rows.delete(username, AuditEntry(actor, "user.delete", username)),
                                       lambda o: o == "deleted")
        if outcome == "missing":
            raise NotFound(f"no user {username!r}")
        if outcome == "last_admin":
            raise Conflict("cannot delete the last admin")

    async def change_password(self, principal: auth.Principal, username: str, body: dict[str, Any],
                              address: str) -> None:
        """A user changes its own password (``current_password`` required, checked like a login: the same
        guard against guessing), an admin anyone's. Every token of that user issued before, the caller's
        own included, stops working."""
        own = principal.sub == username
        if not own and principal.role != ROLE_ADMIN:
            raise Forbidden(f"only an admin may change another user's password; your token has role "
                            f"{principal.role}")
        password = _password(body.get("password"))
        if own:
            current = body.get("current_password")
            if not isinstance(current, str) or not current or len(current) > PASSWORD_MAX:
                raise InvalidArgument("current_password is required to change your own password")
            subject, where = login_key(username), address_key(address)
            self.login_guard.begin(subject, where)
            user = await self.rows.get(username)
            ok = await self._hash_call(auth.check_password, current, user["password_hash"] if user else None)
            if user is None:
                raise Unauthorized("this user no longer exists; log in again")
            if not ok:
                self.login_guard.failed(subject, where)
                raise Forbidden("current_password is wrong")
            self.login_guard.succeeded(subject, where)
        hashed = await self._hash_call(auth.hash_password, password)
        found = await self._revoking(username, self.rows.set_password(
            username, hashed, auth.new_token_version(), AuditEntry(principal.sub, "user.password", username)), bool)
        if not found:
            raise NotFound(f"no user {username!r}")

    async def set_role(self, actor: str, username: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change a user's role (its tokens are revoked); the last admin cannot be demoted."""
        role = _role(body.get("role"))
        outcome, _previous = await self._revoking(username, self.rows.set_role(
            username, role, auth.new_token_version(), AuditEntry(actor, "user.role", username, {"to": role})),
            lambda o: o[0] == "changed")
        if outcome == "missing":
            raise NotFound(f"no user {username!r}")
        if outcome == "last_admin":
            raise Conflict("cannot demote the last admin; make another user admin first")
        user = await self.rows.get(username)
        if user is None:  # deleted meanwhile
            raise NotFound(f"no user {username!r}")
        return user_json(user)
