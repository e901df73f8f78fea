"""Tables fit 80 columns without breaking an IMEI, an id or a time inside a value; times are shown in the
local zone, in --tz ZONE, or relative with --relative; JSON keeps the server's UTC values."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.cli.support import Device, Env

UTC = dt.timezone.utc


def rfc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Fleet:
    devices: list[Device]
    alarms: list[dict[str, Any]]
    track: Device
    points: list[dict[str, Any]]


@pytest.fixture(scope="module")
def fleet(env: Env) -> Fleet:
    devices = [env.register(f"a rather long truck name number {i} of the northern depot") for i in range(3)]
    now = dt.datetime.now(UTC).replace(microsecond=0)
    alarms = []
    for i, (dev, kind) in enumerate(zip(devices * 2, ["HARD_ACCELERATION", "CRASH", "SHARP_TURN"] * 2)):
        alarms.append(env.post_alarm(dev, id=str(uuid.uuid4()), type=kind, ts=rfc(now - dt.timedelta(minutes=5 + i)),
                                     lat=40.123456 + i, lon=-3.654321, files=[f"t{i}-{uuid.uuid4().hex[:6]}.mp4"]))
    points = [{"ts": rfc(now - dt.timedelta(minutes=30 - i)), "lat": 48.1 + i / 1000, "lon": 11.5, "speed_kmh": 50.5,
               "heading": 90.0, "alt_m": 500.0, "accuracy_m": 4.0} for i in range(5)]
    with env.connect(devices[0]) as conn:
        conn.wait_ack(conn.send_points(points))
    return Fleet(devices, alarms, devices[0], points)


def narrow(env: Env, **extra: str) -> dict[str, str | None]:
    return env.cli_env(TRUCKX_URL=env.url, TRUCKX_TOKEN=env.admin_token, COLUMNS="80", **extra)


def lines_fit(out: str, width: int = 80) -> list[str]:
    lines = out.splitlines()
    assert lines, "no output"
    for line in lines:
        assert len(line.rstrip()) <= width, (len(line.rstrip()), line)
    return lines


def short_utc(ts: str) -> str:
    """How a table shows an RFC 3339 time in UTC when narrow: MM-DD HH:MM:SS."""
    return f"{ts[5:10]} {ts[11:19]}"


def test_alarm_table_fits_80_columns_and_keeps_values_whole(env: Env, fleet: Fleet) -> None:
    imeis = ",".join(d.imei for d in fleet.devices)
    result = env.ok("alarms", "list", "--imei", imeis, "--tz", "UTC", env=narrow(env))
    lines = lines_fit(result.stdout)
    for alarm in fleet.alarms:
        row = next(line for line in lines if alarm["id"] in line)  # the id whole, on one line
        assert alarm["imei"] in row and short_utc(alarm["ts"]) in row
    assert "left out to fit 80 columns" in result.stderr and "Position" in result.stderr
    assert "times in UTC" in result.stderr
    # wide, nothing is left out and times are complete
    wide = env.ok("alarms", "list", "--imei", imeis, "--tz", "UTC")
    first = fleet.alarms[0]
    row = next(line for line in wide.stdout.splitlines() if first["id"] in line)
    assert f"{first['ts'][:10]} {first['ts'][11:19]}" in row and "HARD_ACCELERATION" in row and "active" in row
    assert "left out" not in wide.stderr


def test_device_table_fits_80_columns(env: Env, fleet: Fleet) -> None:
    result = env.ok("devices", "list", "--all", "--name", "northern depot", env=narrow(env))
    lines = lines_fit(result.stdout)
    for dev in fleet.devices:
        assert any(dev.imei in line for line in lines)
    assert "…" in result.stdout  # the long names are cut, with an ellipsis, not wrapped


@pytest.mark.parametrize("args", [["locations", "track", "{imei}", "--since", "1h"],
                                  ["locations", "latest", "--imei", "{imei}"],
                                  ["videos", "list", "{imei}"], ["users", "list"], ["profiles", "list"]])
def test_other_tables_fit_80_columns(env: Env, fleet: Fleet, args: list[str]) -> None:
    env.upload(fleet.track, fleet.alarms[0]["files"][0]["name"], b"x" * 1000)
    cfg = env.config_dir()
    env.ok("login", env.url, "-u", "admin", "--password-file", str(env.password_file), env=env.cli_env(cfg))
    result = env.ok(*(a.format(imei=fleet.track.imei) for a in args),
                    env=env.cli_env(cfg, COLUMNS="80"))
    lines_fit(result.stdout)
    if "track" in args:
        for p in fleet.points:
            assert any(p["ts"][11:19] in line for line in result.stdout.splitlines())


def test_tz_shows_times_in_that_zone_and_json_stays_utc(env: Env, fleet: Fleet) -> None:
    alarm = fleet.alarms[0]
    when = dt.datetime.fromisoformat(alarm["ts"].replace("Z", "+00:00"))
    tokyo = when.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    result = env.ok("alarms", "list", "--imei", alarm["imei"], "--tz", "Asia/Tokyo")
    assert tokyo in result.stdout and "times in Asia/Tokyo (UTC+09:00)" in result.stderr
    # before the command name too, and from TRUCKX_TZ
    assert tokyo in env.ok("--tz", "Asia/Tokyo", "alarms", "list", "--imei", alarm["imei"]).stdout
    assert tokyo in env.ok("alarms", "list", "--imei", alarm["imei"],
                           env=env.cli_env(TRUCKX_URL=env.url, TRUCKX_TOKEN=env.admin_token,
                                           TRUCKX_TZ="Asia/Tokyo")).stdout
    shown = env.ok("alarms", "show", alarm["id"], "--tz", "Asia/Tokyo").stdout
    assert f"{tokyo} JST" in shown and "min ago" in shown
    # the local zone by default (TZ set for the process running the CLI)
    items = env.json("alarms", "list", "--imei", alarm["imei"], "--tz", "Asia/Tokyo")
    assert {i["ts"] for i in items} >= {alarm["ts"]}  # machine output: the server's UTC values
    bad = env.run("alarms", "list", "--tz", "Mars/Olympus")
    assert bad.exit_code == 2 and "unknown time zone" in bad.stderr


def test_local_zone_is_the_default(env: Env, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    alarm = fleet.alarms[1]
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        when = dt.datetime.fromisoformat(alarm["ts"].replace("Z", "+00:00"))
        local = when.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M:%S")
        result = env.ok("alarms", "list", "--imei", alarm["imei"])
        assert local in result.stdout and re.search(r"times in E[SD]T \(UTC-0[45]:00\)", result.stderr)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_relative_times(env: Env, fleet: Fleet) -> None:
    result = env.ok("alarms", "list", "--imei", fleet.devices[0].imei, "--relative")
    assert re.search(r"\b([5-9]|1\d) min ago\b", result.stdout), result.stdout
    assert "times relative to now" in result.stderr
    out = env.ok("devices", "show", fleet.track.imei, "--relative").stdout
    assert re.search(r"last_seen\s+\d+ (s|min) ago", out), out


def test_watch_live_view_fits_80_columns_with_names(env: Env, fleet: Fleet) -> None:
    dev = env.register("crane 7")
    stop = threading.Event()

    def drive() -> None:
        with env.connect(dev) as conn:
            i = 0
            while not stop.is_set():
                ts = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
                conn.wait_ack(conn.send_points([{"ts": rfc(ts), "lat": 10 + i * 0.001, "lon": 20.0}]))
                i += 1
                time.sleep(0.1)

    t = threading.Thread(target=drive)
    t.start()
    try:
        result = env.ok("watch", "--imei", dev.imei, "--seconds", "1.5", env=narrow(env))
    finally:
        stop.set()
        t.join()
    lines = lines_fit(result.stdout)
    rows = [line for line in lines if re.match(r"\d\d:\d\d:\d\d  location ", line)]
    assert rows and all(f"{dev.imei}  crane 7" in line for line in rows), lines


def test_json_unchanged_by_view_options(env: Env, fleet: Fleet) -> None:
    a = env.json("devices", "show", fleet.track.imei)
    b = json.loads(env.ok("devices", "show", fleet.track.imei, "--json", "--relative", "--tz", "Asia/Tokyo").stdout)
    assert a == b and a["imei"] == fleet.track.imei
