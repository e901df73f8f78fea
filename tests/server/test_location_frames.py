"""The one-pass decoding of location frames (msgspec) against the general path (json + parse_point):
for every frame the fast path either declines (None) or gives exactly what the general path gives."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from truckx_server.domain.locations import fast_locations, parse_point, parse_seq
from truckx_server.errors import TruckxError
from truckx_server.models import load_json

IMEI = "490154203237518"
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
P = {"ts": "2026-11-29T11:59:00Z", "lat": 48.1, "lon": 11.5}
FULL = {**P, "speed_kmh": 72, "heading": 359.5, "alt_m": -12.5, "accuracy_m": 3}


def general(text: str):
    """What the general path of the device socket makes of a frame: (type, seq, points) or None."""
    try:
        msg = load_json(text, "the frame")
        if not isinstance(msg, dict) or msg.get("type") not in ("location", "locations"):
            return None
        seq = parse_seq(msg)
        raw = [msg] if msg["type"] == "location" else msg.get("points")
        if not isinstance(raw, list) or not raw or len(raw) > 1000:
            return None
        return msg["type"], seq, [parse_point(IMEI, r, NOW) for r in raw]
    except TruckxError:
        return None


VALID = [
    {"type": "location", "seq": 1, **P},
    {"type": "location", "seq": 0, **FULL},
    {"seq": 7, **FULL, "type": "location"},  # any key order
    {"type": "location", "seq": 2**63 - 1, **P, "speed_kmh": None, "heading": None},  # explicit nulls
    {"type": "location", "seq": 3, **P, "ts": "2026-11-29T13:59:00+02:00"},  # an offset: converted to UTC
    {"type": "location", "seq": 3, **P, "ts": "2026-11-29T11:59:00.123456Z", "lat": -90, "lon": 180},
    {"type": "locations", "seq": 4, "points": [P, FULL, {**P, "ts": "2026-11-29T11:58:00Z"}]},
]

INVALID = [
    {"type": "location", "seq": 1, **P, "imei": "490154203237526"},  # an unknown key: the general path
    {"type": "location", "seq": 1, **P, "extra": [[[[]]]]},
    {"type": "location", "seq": -1, **P},
    {"type": "location", "seq": 2**63, **P},
    {"type": "location", "seq": 1.0, **P},
    {"type": "location", "seq": True, **P},
    {"type": "location", "seq": "1", **P},
    {"type": "location", **P},
    {"type": "location", "seq": 1, **P, "lat": 90.5},
    {"type": "location", "seq": 1, **P, "lon": -180.01},
    {"type": "location", "seq": 1, **P, "lat": True},
    {"type": "location", "seq": 1, **P, "lat": "48.1"},
    {"type": "location", "seq": 1, **P, "lat": None},
    {"type": "location", "seq": 1, "ts": P["ts"], "lat": 1},
    {"type": "location", "seq": 1, **P, "speed_kmh": 1000.5},
    {"type": "location", "seq": 1, **P, "heading": -1},
    {"type": "location", "seq": 1, **P, "alt_m": 20001},
    {"type": "location", "seq": 1, **P, "accuracy_m": -0.1},
    {"type": "location", "seq": 1, **P, "ts": "2026-11-29T12:06:00Z"},  # too far in the future
    {"type": "location", "seq": 1, **P, "ts": "1999-12-31T23:59:59Z"},  # clock not set
    {"type": "location", "seq": 1, **P, "ts": "2026-11-29T11:59:00"},  # no zone
    {"type": "location", "seq": 1, **P, "ts": "yesterday"},
    {"type": "location", "seq": 1, **P, "ts": 1764417540},
    {"type": "locations", "seq": 1, "points": []},
    {"type": "locations", "seq": 1, "points": [P] * 1001},
    {"type": "locations", "seq": 1, "points": [P, {**P, "lat": 91}]},
    {"type": "locations", "seq": 1, "points": [P, {**P, "foo": 1}]},
    {"type": "locations", "seq": 1, "points": P},
    {"type": "locations", "seq": 1, **P},
    {"type": "ping"},
    {"type": "command_result", "id": "x", "ok": True},
    {"seq": 1, **P},
    [1, 2],
]

RAW_INVALID = [
    '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": NaN, "lon": 1}',
    '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": 1e400, "lon": 1}',
    '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": 1, "lon": 1} trailing',
    '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00\\ud800Z", "lat": 1, "lon": 1}',
    '{"type": "location", "type": "ping", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": 1, "lon": 1}',
    '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": 1, "lat": 100, "lon": 1}',
    "",
    "null",
]


@pytest.mark.parametrize("frame", VALID, ids=range(len(VALID)))
def test_valid_frames_take_the_fast_path_with_the_general_result(frame: dict) -> None:
    text = json.dumps(frame)
    fast = fast_locations(IMEI, text, NOW)
    assert fast is not None
    assert fast == general(text)


@pytest.mark.parametrize("text", [json.dumps(f) for f in INVALID] + RAW_INVALID,
                         ids=range(len(INVALID) + len(RAW_INVALID)))
def test_anything_else_is_left_to_the_general_path(text: str) -> None:
    assert fast_locations(IMEI, text, NOW) is None


def test_duplicate_keys_read_as_the_general_path_reads_them() -> None:
    text = '{"type": "location", "seq": 1, "ts": "2026-11-29T11:59:00Z", "lat": 100, "lat": 45, "lon": 1}'
    assert fast_locations(IMEI, text, NOW) == general(text) != None  # noqa: E711 - the last one wins in both
