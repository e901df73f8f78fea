"""Tokens, roles and secret hashing.

- Tokens: HS256 JWTs with ``sub``, ``role``, ``iat``, ``exp``, ``jti`` and ``ver``: a device's
  ``secret_version``, or an admin-plane user's ``token_version`` (see :func:`new_token_version`). A token
  whose ``ver`` is not the current one is refused.
- Device secrets are random 32-byte strings, so a fast keyed hash (HMAC-SHA256 with a server key) is
  right for them; admin passwords are chosen by people, so they get argon2id.
- Generated secrets live in the data directory with mode 0600 and are never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import privacy
from .config import Secret
from .errors import Unauthorized
from .models import utcnow
from .vocab import ROLE_DEVICE, ROLES

_ALGORITHM = "HS256"
_TOKEN_ROLES = frozenset((ROLE_DEVICE, *ROLES))
#: token versions stay below 2**53, so that they are exact in every JSON reader (JavaScript numbers)
TOKEN_VERSION_BITS = 53


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: str
    #: the ``ver`` claim: a device's secret_version, a user's token_version, when the token was issued
    version: int | None = None

    @property
    def is_device(self) -> bool:
        return self.role == ROLE_DEVICE


class TokenService:
    def __init__(self, secret: Secret, device_ttl_s: int, admin_ttl_s: int) -> None:
        self._secret = secret
        self.device_ttl_s = device_ttl_s
        self.admin_ttl_s = admin_ttl_s

    def issue(self, sub: str, role: str, version: int | None = None) -> tuple[str, dt.datetime]:
        now = utcnow().replace(microsecond=0)
        ttl = self.device_ttl_s if role == ROLE_DEVICE else self.admin_ttl_s
        expires = now + dt.timedelta(seconds=ttl)
        claims = {"sub": sub, "role": role, "iat": now, "exp": expires, "jti": uuid.uuid4().hex}
        if version is not None:
            claims["ver"] = version
        token = jwt.encode(claims, self._secret.get(), algorithm=_ALGORITHM)
        return token, expires

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._secret.get(), algorithms=[_ALGORITHM],
                                options={"require": ["sub", "role", "exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired; log in again") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        sub, role = claims.get("sub"), claims.get("role")
        version = claims.get("ver")
        if not isinstance(sub, str) or role not in _TOKEN_ROLES or (
                version is not None and (isinstance(version, bool) or not isinstance(version, int))):
            raise Unauthorized("invalid token")
        return Principal(sub=sub, role=role, version=version)


def new_token_version() -> int:
    """A user's token generation, drawn afresh at random when the user is created and whenever its
    tokens are revoked (password or role change). Random rather than a counter, so that a user deleted
    and created again under the same name never reuses a generation of its former self: a counter would
    restart (or need a tombstone row kept forever), a clock can go back. Two draws collide with
    probability 2**-53, and an old token would also have to be unexpired."""
    return 1 + secrets.randbelow(2**TOKEN_VERSION_BITS - 1)


# -- device secrets ------------------------------------------------------------------------------


def new_device_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_device_secret(key: Secret, secret: str) -> str:
    return hmac.new(key.get().encode(), secret.encode(), hashlib.sha256).hexdigest()


def check_device_secret(key: Secret, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_device_secret(key, secret), stored_hash)


# -- admin passwords -----------------------------------------------------------------------------

_hasher = PasswordHasher()
#: verified against when the user does not exist, so both paths cost the same time
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password: str, stored_hash: str | None) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# -- generated secret files ----------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never readable by others, even briefly)."""
    privacy.private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create_secret(path: Path) -> Secret:
    if path.exists():
        value = path.read_text().strip()
        if value:
            return Secret(value)
    value = secrets.token_urlsafe(48)
    write_private(path, value + "\n")
    return Secret(value)
