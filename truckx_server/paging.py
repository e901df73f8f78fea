"""Keyset pagination: one opaque cursor codec and one page helper for every paged list.

A cursor is the sort key of the last item of a page (a short JSON list), urlsafe-base64 without padding.
:func:`decode` checks it against the list's key shape, so a cursor that is not one of ours (or belongs to
another list) is ``400 invalid_argument``. :func:`keyset` asks the store for ``limit + 1`` rows to know
whether a next page exists.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from .errors import InvalidArgument, TruckxError
from .models import load_json, parse_time, validate_file_name

T = TypeVar("T")

INVALID = "cursor is not valid; pass next_cursor from the previous page"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
#: the longest cursor any list makes (a file name of 128 characters, base64'd) with room to spare
MAX_CURSOR = 512
#: urlsafe base64 without padding: what :func:`encode` makes (the OpenAPI document says the same)
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
_CURSOR_RE = re.compile(CURSOR_PATTERN[1:-1])


def encode(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def text(value: Any) -> str:
    """A cursor part that is a string."""
    if not isinstance(value, str):
        raise InvalidArgument(INVALID)
    return value


def integer(value: Any) -> int:
    """A cursor part that is a non-negative integer (a row id)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(INVALID)
    return value


def time(value: Any) -> Any:
    """A cursor part that is an RFC 3339 time (returned as an aware datetime)."""
    try:
        return parse_time(text(value), "cursor")
    except InvalidArgument:
        raise InvalidArgument(INVALID) from None


def file_name(value: Any) -> str:
    """A cursor part that is a video file name."""
    try:
        return validate_file_name(text(value))
    except InvalidArgument:
        raise InvalidArgument(INVALID) from None


def decode(cursor: str | None, *parts: Callable[[Any], Any]) -> list[Any] | None:
    """The key in ``cursor``, each element converted by its part (:func:`text`, :func:`time`); None
    for no cursor."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR or not _CURSOR_RE.fullmatch(cursor):
        raise InvalidArgument(INVALID)
    try:
        key = load_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), "cursor", max_depth=1)
    except (TruckxError, ValueError):  # binascii.Error is a ValueError
        raise InvalidArgument(INVALID) from None
    if not isinstance(key, list) or len(key) != len(parts):
        raise InvalidArgument(INVALID)
    return [part(k) for part, k in zip(parts, key)]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    def json(self, present: Callable[[T], Any]) -> dict[str, Any]:
        return {"items": [present(i) for i in self.items], "next_cursor": self.next_cursor}


async def keyset(fetch: Callable[[int], Awaitable[list[T]]], limit: int,
                 key: Callable[[T], Sequence[Any]]) -> Page[T]:
    """One page: ``fetch(n)`` returns up to ``n`` rows in order after the previous page's key; the
    next cursor is ``key`` of the last row when more follow."""
    rows = await fetch(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode(key(rows[-1])) if more else None)
