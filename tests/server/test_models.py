"""Pure validation logic (no server)."""

import datetime as dt

import pytest

from truckx_server.errors import InvalidArgument, InvalidJson
from truckx_server.domain.alarms import parse_alarm
from truckx_server.domain.commands import parse_command
from truckx_server.domain.locations import parse_point
from truckx_server.models import (format_time, is_valid_imei, load_json, make_imei, parse_time,
                                  validate_file_name)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def test_luhn_imei() -> None:
    assert is_valid_imei("490154203237518")  # a published example IMEI
    assert not is_valid_imei("490154203237517")
    assert not is_valid_imei("49015420323751")
    assert not is_valid_imei("4901542032375180")
    assert not is_valid_imei("49015420323751a")
    assert not is_valid_imei("４９０１５４２０３２３７５１８")  # full-width digits are not ASCII
    assert not is_valid_imei(490154203237518)
    assert is_valid_imei(make_imei("35000000000001"))


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "a\\b", "", "x" * 129, "a..b", "é.mp4", "a b", "%2e%2e"])
def test_bad_file_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_file_name(name)


@pytest.mark.parametrize("name", ["a", "clip_0001.mp4", "A-b.c_d", "x" * 128])
def test_good_file_names(name: str) -> None:
    assert validate_file_name(name) == name


def test_times() -> None:
    assert parse_time("2026-11-27T21:55:00Z") == dt.datetime(2026, 11, 27, 21, 55, tzinfo=dt.timezone.utc)
    assert parse_time("2026-11-27T23:55:00.5+02:00") == dt.datetime(2026, 11, 27, 21, 55, 0, 500000,
                                                                    tzinfo=dt.timezone.utc)
    for bad in ("2026-11-27", "2026-11-27T21:55:00", "yesterday", "", None, 5):
        with pytest.raises(InvalidArgument):
            parse_time(bad)
    assert format_time(parse_time("2026-11-27T21:55:00.250Z")) == "2026-11-27T21:55:00.25Z"


def test_point_validation() -> None:
    p = parse_point("490154203237518", {"ts": "2026-11-27T11:00:00Z", "lat": 45, "lon": -73.5, "speed_kmh": 80}, NOW)
    assert (p.lat, p.lon, p.speed_kmh) == (45.0, -73.5, 80.0)
    for bad in ({"ts": "2026-11-27T11:00:00Z", "lat": 91, "lon": 0},
                {"ts": "2026-11-27T11:00:00Z", "lat": 0, "lon": 180.1},
                {"ts": "2026-11-27T11:00:00Z", "lat": True, "lon": 0},
                {"ts": "2026-11-27T11:00:00Z", "lat": float("nan"), "lon": 0},
                {"ts": "2026-11-27T12:06:00Z", "lat": 0, "lon": 0},  # 6 minutes in the future
                {"ts": "1980-01-06T00:00:00Z", "lat": 0, "lon": 0},  # GPS epoch: clock never set
                {"ts": "2026-11-27T11:00:00Z", "lat": 0, "lon": 0, "speed_kmh": -1},
                {"lat": 0, "lon": 0}, [1, 2]):
        with pytest.raises(InvalidArgument):
            parse_point("490154203237518", bad, NOW)
    # 4 minutes ahead is within the allowed clock skew
    parse_point("490154203237518", {"ts": "2026-11-27T12:04:00Z", "lat": 0, "lon": 0}, NOW)


def test_alarm_validation() -> None:
    a = parse_alarm({"type": "crash", "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2, "files": ["a.mp4", "a.mp4"]},
                    NOW)
    assert a.type == "CRASH" and a.files == ("a.mp4",) and not a.client_id
    a2 = parse_alarm({"id": "6F9619FF-8B86-D011-B42D-00C04FC964FF", "type": "OVERSPEED",
                      "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2}, NOW)
    assert a2.id == "6f9619ff-8b86-d011-b42d-00c04fc964ff" and a2.client_id
    for bad in ({"type": "FIRE", "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2},
                {"type": "CRASH", "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2, "files": ["../x"]},
                {"type": "CRASH", "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2, "id": "nope"},
                {"type": "CRASH", "ts": "2026-11-27T11:00:00Z", "lat": 1, "lon": 2, "files": "a.mp4"}):
        with pytest.raises(InvalidArgument):
            parse_alarm(bad, NOW)


def test_command_validation() -> None:
    assert parse_command({"command": "reset"}, 3600) == ("reset", {}, 3600)
    assert parse_command({"command": "set_report_interval", "args": {"seconds": 30}, "ttl_s": 60}, 3600) == (
        "set_report_interval", {"seconds": 30}, 60)
    for bad in ({"command": "format_disk"}, {"command": "set_report_interval", "args": {"seconds": 0}},
                {"command": "request_video", "args": {"from": "2026-11-27T11:00:00Z", "to": "2026-11-27T10:00:00Z"}},
                {"command": "reset", "ttl_s": 0}):
        with pytest.raises(InvalidArgument):
            parse_command(bad, 3600)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-00:01",
                                   "0001-01-01t00:00:00+23:59"])
def test_times_that_leave_the_calendar_in_utc_are_invalid_arguments(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_time(value)


def test_the_ends_of_time_parse_and_format_as_rfc_3339() -> None:
    first, last = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"
    assert parse_time(first) == dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    assert format_time(parse_time(first)) == first  # four digits of year, not strftime's "1"
    assert format_time(parse_time(last)) == last
    assert format_time(parse_time("0999-01-01T01:00:00+01:00")) == "0999-01-01T00:00:00Z"


def test_load_json_is_strict_and_bounded() -> None:
    assert load_json(b'{"a": [1, 2.5, "\\u00e9\\ud83d\\ude9a"]}') == {"a": [1, 2.5, "\u00e9\U0001f69a"]}
    assert load_json("[" * 32 + "]" * 32) is not None
    for bad in ("[" * 33 + "]" * 33, "[" * 100_000, '{"a":' * 40 + "1" + "}" * 40, "NaN", '{"x": -Infinity}',
                b"\xff", '"\\ud800"', '["a\\udfffb"]', "1" * 5000, "", "{"):
        with pytest.raises(InvalidJson):
            load_json(bad)
    # the bound is a parameter (cursors allow one level)
    assert load_json("[1]", max_depth=1) == [1]
    with pytest.raises(InvalidJson):
        load_json("[[1]]", max_depth=1)
