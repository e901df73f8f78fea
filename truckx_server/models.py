"""Shared value types and scalar validation (IMEI, file names, times, numbers). Pure: no I/O, no framework
imports. Each resource's own parsing and JSON shape live in ``domain/<resource>.py``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from typing import Any, Mapping, Sequence

from .errors import InvalidArgument, InvalidJson
from .vocab import AUDIT_ACTIONS, WEBHOOK_EVENTS

UTC = dt.timezone.utc

FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: how far in the future a device clock may be before its timestamps are refused
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
#: device times before this are a clock that was never set (no GPS fix yet, RTC reset), not history
EARLIEST_DEVICE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
#: JSON from a client (bodies, WebSocket frames, cursors) nested deeper than this is refused
MAX_JSON_DEPTH = 32


# ---------------------------------------------------------------------------------------------
# scalars


def luhn_check_digit(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right of the payload is doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_imei(value: object) -> bool:
    return (isinstance(value, str) and len(value) == 15 and value.isascii() and value.isdigit()
            and luhn_check_digit(value[:14]) == int(value[14]))


def validate_imei(value: object) -> str:
    if not is_valid_imei(value):
        raise InvalidArgument("imei must be 15 digits with a valid Luhn check digit")
    return value  # type: ignore[return-value]


def make_imei(prefix14: str) -> str:
    """The valid IMEI whose first 14 digits are ``prefix14`` (for registration tools and tests)."""
    return prefix14 + str(luhn_check_digit(prefix14))


def validate_file_name(value: object) -> str:
    if not isinstance(value, str) or not FILE_NAME_RE.fullmatch(value):
        raise InvalidArgument("file name must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
    if value in (".", "..") or ".." in value:
        raise InvalidArgument("file name must not contain '..'")
    return value


def parse_time(value: object, field: str = "ts") -> dt.datetime:
    """RFC 3339 string to an aware UTC datetime (microsecond precision). A time that exists only in
    its own offset (``0001-01-01T00:00:00+01:00`` is in year 0 in UTC) is refused like any other
    invalid time: every time this returns can be converted, formatted and stored."""
    if type(value) is str and len(value) > 19 and value[10] in "Tt":
        try:  # the common case, fast (Python 3.11's fromisoformat reads "Z")
            parsed = _fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            if parsed.tzinfo is UTC:
                return parsed
            try:
                return parsed.astimezone(UTC)
            except OverflowError:
                raise InvalidArgument(f"{field} is out of range once converted to UTC") from None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field} must be an RFC 3339 time string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    if "T" not in text.upper():
        raise InvalidArgument(f"{field} must be an RFC 3339 time string, like 2026-11-27T21:55:00Z")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{field} must be an RFC 3339 time string, like 2026-11-27T21:55:00Z") from None
    if parsed.tzinfo is None:
        raise InvalidArgument(f"{field} must carry a time zone (Z or +hh:mm)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidArgument(f"{field} is out of range once converted to UTC") from None


_fromisoformat = dt.datetime.fromisoformat


def format_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # not strftime: its %Y gives "1", not "0001", for year 1 on glibc
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def number(obj: Mapping[str, Any], key: str, lo: float, hi: float, required: bool = True) -> float | None:
    value = obj.get(key)
    kind = type(value)
    if (kind is float or kind is int) and lo <= value <= hi:  # fast path; NaN and inf fail the range
        return float(value)  # type: ignore[arg-type]
    if value is None:
        if required:
            raise InvalidArgument(f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{key} must be a number")
    raise InvalidArgument(f"{key} must be between {lo:g} and {hi:g}")


def whole_number(value: object) -> int | None:
    """A JSON integer as JSON Schema counts them (``30`` and ``30.0`` alike), else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def device_time(obj: Mapping[str, Any], now: dt.datetime, key: str = "ts") -> dt.datetime:
    ts = parse_time(obj.get(key), key)
    if ts > now + MAX_CLOCK_SKEW:
        raise InvalidArgument(f"{key} is more than 5 minutes in the future")
    if ts < EARLIEST_DEVICE_TIME:
        raise InvalidArgument(f"{key} is before 2000-01-01: the device clock is not set")
    return ts


def load_json(raw: str | bytes | bytearray, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Client JSON (a request body, a WebSocket frame, a cursor) as Python data, strictly RFC 8259:
    UTF-8, no ``NaN``/``Infinity``, no lone surrogates (they cannot be stored or sent on), nesting
    at most ``max_depth`` arrays and objects. Anything else is :class:`InvalidJson`; in particular a
    RecursionError never escapes."""
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidJson(f"{what} is nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, NaN/Infinity, too many digits
        raise InvalidJson(f"{what} is not valid JSON") from None
    if type(value) in _CONTAINERS and _deeper_than(value, max_depth, text):
        raise InvalidJson(f"{what} is nested deeper than {max_depth} levels")
    if "\\u" in text:  # only an escape can make a lone surrogate out of valid UTF-8
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson(f"{what} has a lone UTF-16 surrogate (\\ud800-\\udfff) in a string") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_CONTAINERS = (dict, list)
_CONTAINER_TYPES = frozenset(_CONTAINERS)


def _deeper_than(value: Any, max_depth: int, text: str) -> bool:
    """Whether ``value`` nests more than ``max_depth`` arrays and objects. Without enough brackets in
    the text it cannot (a count at C speed); else one pass over the containers, level by level."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    level = [value]
    for _ in range(max_depth):
        deeper: list[Any] = []
        for container in level:
            children = container.values() if type(container) is dict else container
            if _CONTAINER_TYPES.isdisjoint(map(type, children)):  # at C speed: the common case (leaves)
                continue
            deeper.extend(child for child in children if type(child) in _CONTAINER_TYPES)
        if not deeper:
            return False
        level = deeper
    return True


def require_object(value: object, what: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# locations


@dataclasses.dataclass(slots=True)  # not frozen: frozen dataclasses are slow to build, and this is the hot path
class LocationPoint:
    imei: str
    ts: dt.datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading: float | None = None
    alt_m: float | None = None
    accuracy_m: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"imei": self.imei, "ts": format_time(self.ts), "lat": self.lat, "lon": self.lon}
        for key in ("speed_kmh", "heading", "alt_m", "accuracy_m"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


# ---------------------------------------------------------------------------------------------
# alarms


@dataclasses.dataclass(frozen=True, slots=True)
class AlarmIn:
    id: str
    type: str
    ts: dt.datetime
    lat: float
    lon: float
    speed_kmh: float | None
    files: tuple[str, ...]
    details: dict[str, Any] | None
    #: the device gave the id (so a retry may return the stored alarm)
    client_id: bool


def parse_bool(value: str | None, name: str) -> bool | None:
    """A query flag: true/1/yes or false/0/no; None when absent or empty."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false")


def time_arg(value: str | None, name: str) -> dt.datetime | None:
    """An optional RFC 3339 query argument: None when absent; present but empty is refused, like any
    other string that is not a time."""
    return None if value is None else parse_time(value, name)


def imei_list(values: Sequence[str]) -> list[str]:
    """Repeatable IMEI arguments, validated, without repeats."""
    return list(dict.fromkeys(validate_imei(v) for v in values))


# ---------------------------------------------------------------------------------------------
# the audit log

#: a detail is at most this many bytes of JSON (longer strings are cut first, then the detail)
AUDIT_DETAIL_MAX = 2048
AUDIT_TEXT_MAX = 200
AUDIT_LIST_MAX = 20
AUDIT_TARGET_MAX = 192
#: keys a detail may never carry (a secret must not reach the audit log, even by mistake)
_SECRET_KEY = re.compile("secret|password|token|hash", re.IGNORECASE)


def _bounded(value: Any, depth: int = 0) -> tuple[Any, int]:
    """``value`` with long strings and lists cut, and an upper bound of the bytes of its JSON (a string's
    character is at most 6 bytes, escaped), so that most details need no trial serialisation."""
    kind = type(value)
    if kind is str or isinstance(value, str):
        cut = value if len(value) <= AUDIT_TEXT_MAX else value[:AUDIT_TEXT_MAX - 1] + "\u2026"
        return cut, 6 * len(cut) + 2
    if value is None or isinstance(value, (bool, int, float)):
        return value, len(repr(value)) + 2
    if depth >= 3:
        return "\u2026", 8
    if kind is dict or isinstance(value, Mapping):
        out, size = {}, 2
        for key, item in value.items():
            if not isinstance(key, str) or _SECRET_KEY.search(key):
                raise ValueError(f"audit detail key {key!r} is not allowed")
            out[key], n = _bounded(item, depth + 1)
            size += n + 6 * len(key) + 4
        return out, size
    if isinstance(value, (list, tuple)):
        items, size = [], 2
        for item in value[:AUDIT_LIST_MAX]:
            cut, n = _bounded(item, depth + 1)
            items.append(cut)
            size += n + 1
        if len(value) > AUDIT_LIST_MAX:
            items.append("\u2026")
            size += 9
        return items, size
    return _bounded(str(value), depth)


def audit_detail(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``detail`` made fit for the audit log: long strings and lists cut, at most
    :data:`AUDIT_DETAIL_MAX` bytes of JSON (else ``{"truncated": true}``); a key naming a secret,
    password, token or hash is a programming error (``ValueError``)."""
    if not detail:
        return None
    out, bound = _bounded(detail)
    if bound > AUDIT_DETAIL_MAX and len(json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()) > \
            AUDIT_DETAIL_MAX:
        return {"truncated": True}
    return out  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change made through the admin plane, as the audit log keeps it. A domain service builds one
    per change and hands it to the store call that makes the change, which writes it in the same
    transaction (``storage/sql/audit.py``). ``action`` is one of ``vocab.AUDIT_ACTIONS``."""

    actor: str
    action: str
    target: str
    detail: dict[str, Any] | None = None
    at: dt.datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}: add it to vocab.AUDIT_ACTIONS")
        # a target is an IMEI, an id or a user name, shorter than this; one taken from a path that is
        # longer names nothing (the change fails, and the entry is never written)
        object.__setattr__(self, "target", str(self.target)[:AUDIT_TARGET_MAX])
        object.__setattr__(self, "detail", audit_detail(self.detail))


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxEvent:
    """Something a webhook may be told of, as the outbox keeps it: written by the store call that makes
    the change, in the same transaction (``storage/sql/outbox.py``), so a crash between the change and
    the send loses nothing. ``type`` is one of ``vocab.WEBHOOK_EVENTS``; ``data`` is the resource as the
    admin API shows it; ``at`` is when the event happened."""

    type: str
    data: dict[str, Any]
    at: dt.datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.type not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown webhook event {self.type!r}: add it to vocab.WEBHOOK_EVENTS")
