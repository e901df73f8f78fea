"""Domain records and validation of inbound JSON. Pure: no I/O, no framework imports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from typing import Any, Mapping

from .errors import InvalidArgument

UTC = dt.timezone.utc

ALARM_TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
ALARM_STATUSES = ("active", "acknowledged", "cleared")
COMMANDS = ("reset", "set_report_interval", "request_video")
COMMAND_STATUSES = ("queued", "sent", "succeeded", "failed", "expired")
ROLES = ("admin", "viewer")

FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: how far in the future a device clock may be before its timestamps are refused
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_POINTS_PER_MESSAGE = 1000
#: device times before this are a clock that was never set (no GPS fix yet, RTC reset), not history
EARLIEST_DEVICE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


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
    """RFC 3339 string to an aware UTC datetime (microsecond precision)."""
    if type(value) is str and len(value) > 19 and value[10] in "Tt":
        try:  # the common case, fast (Python 3.11's fromisoformat reads "Z")
            parsed = _fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
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
    return parsed.astimezone(UTC)


_fromisoformat = dt.datetime.fromisoformat


def format_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def _number(obj: Mapping[str, Any], key: str, lo: float, hi: float, required: bool = True) -> float | None:
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


def _device_time(obj: Mapping[str, Any], now: dt.datetime, key: str = "ts") -> dt.datetime:
    ts = parse_time(obj.get(key), key)
    if ts > now + MAX_CLOCK_SKEW:
        raise InvalidArgument(f"{key} is more than 5 minutes in the future")
    if ts < EARLIEST_DEVICE_TIME:
        raise InvalidArgument(f"{key} is before 2000-01-01: the device clock is not set")
    return ts


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


def parse_point(imei: str, obj: object, now: dt.datetime) -> LocationPoint:
    point = obj if type(obj) is dict else require_object(obj, "point")
    return LocationPoint(
        imei=imei,
        ts=_device_time(point, now),
        lat=_number(point, "lat", -90, 90),  # type: ignore[arg-type]
        lon=_number(point, "lon", -180, 180),  # type: ignore[arg-type]
        speed_kmh=_number(point, "speed_kmh", 0, 1000, required=False),
        heading=_number(point, "heading", 0, 360, required=False),
        alt_m=_number(point, "alt_m", -1000, 20000, required=False),
        accuracy_m=_number(point, "accuracy_m", 0, 1_000_000, required=False),
    )


def parse_seq(msg: Mapping[str, Any]) -> int:
    seq = msg.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq > 2**63 - 1:
        raise InvalidArgument("seq must be a non-negative integer")
    return seq


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


def parse_alarm(body: object, now: dt.datetime) -> AlarmIn:
    obj = require_object(body)
    raw_id = obj.get("id")
    if raw_id is None:
        alarm_id, client_id = str(uuid.uuid4()), False
    else:
        try:
            alarm_id, client_id = str(uuid.UUID(str(raw_id))), True
        except ValueError:
            raise InvalidArgument("id must be a UUID") from None
    kind = obj.get("type")
    if not isinstance(kind, str) or kind.upper() not in ALARM_TYPES:
        raise InvalidArgument("type must be one of " + ", ".join(ALARM_TYPES))
    files = obj.get("files", [])
    if not isinstance(files, list) or len(files) > 100:
        raise InvalidArgument("files must be a list of at most 100 file names")
    names = tuple(dict.fromkeys(validate_file_name(f) for f in files))
    details = obj.get("details")
    if details is not None and not isinstance(details, dict):
        raise InvalidArgument("details must be a JSON object")
    return AlarmIn(
        id=alarm_id,
        type=kind.upper(),
        ts=_device_time(obj, now),
        lat=_number(obj, "lat", -90, 90),  # type: ignore[arg-type]
        lon=_number(obj, "lon", -180, 180),  # type: ignore[arg-type]
        speed_kmh=_number(obj, "speed_kmh", 0, 1000, required=False),
        files=names,
        details=details,
        client_id=client_id,
    )


def alarm_json(alarm: dict[str, Any]) -> dict[str, Any]:
    """A stored alarm (with its ``files``) as the API shows it."""
    return {
        "id": alarm["id"], "imei": alarm["imei"], "type": alarm["type"], "ts": format_time(alarm["ts"]),
        "lat": alarm["lat"], "lon": alarm["lon"], "speed_kmh": alarm.get("speed_kmh"),
        "details": alarm.get("details"), "status": alarm["status"],
        "received_at": format_time(alarm["received_at"]),
        "acknowledged_by": alarm.get("acknowledged_by"), "acknowledged_at": format_time(alarm.get("acknowledged_at")),
        "ack_note": alarm.get("ack_note"),
        "cleared_by": alarm.get("cleared_by"), "cleared_at": format_time(alarm.get("cleared_at")),
        "files": alarm.get("files", []),
    }


# ---------------------------------------------------------------------------------------------
# commands


def parse_command(body: object, default_ttl_s: int) -> tuple[str, dict[str, Any], int]:
    obj = require_object(body)
    name = obj.get("command")
    if name not in COMMANDS:
        raise InvalidArgument("command must be one of " + ", ".join(COMMANDS))
    args = obj.get("args") or {}
    if not isinstance(args, dict):
        raise InvalidArgument("args must be a JSON object")
    if name == "set_report_interval":
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 86400:
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
    ttl = obj.get("ttl_s", default_ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 30 * 86400:
        raise InvalidArgument("ttl_s must be an integer from 1 to 2592000")
    return name, args, ttl
