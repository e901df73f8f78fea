"""truckx alarms: every filter returns exactly the matching alarms; pagination walks every item once;
ack/clear lifecycle; table and CSV output."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cli.support import Device, Env, new_imei

UTC = dt.timezone.utc
TYPES = ["CRASH", "OVERSPEED", "HARD_BRAKE"]


def rfc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Seeded:
    a: Device
    b: Device
    now: dt.datetime
    alarms: list[dict[str, Any]]  # index i: the i-th alarm as stored, plus "arrived"

    def ids(self, pred: Any) -> list[str]:
        """Ids of the alarms matching ``pred``, newest first (the server's order)."""
        chosen = [a for a in self.alarms if pred(a)]
        return [a["id"] for a in sorted(chosen, key=lambda a: (a["ts"], a["id"]), reverse=True)]


@pytest.fixture(scope="module")
def seeded(env: Env) -> Seeded:
    a, b = env.register("alarm-a"), env.register("alarm-b")
    now = dt.datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    alarms = []
    for i in range(12):
        dev = a if i % 2 == 0 else b
        files = [f"{tag}-{i}.mp4"] if i % 3 == 0 else []
        stored = env.post_alarm(dev, id=str(uuid.uuid4()), type=TYPES[i % 3].lower(),
                                ts=rfc(now - dt.timedelta(minutes=i * 10 + 1)),
                                lat=40 + i * 0.1, lon=-3 + i * 0.1, speed_kmh=50 + i, files=files)
        arrived = i % 6 == 0
        if arrived:
            env.upload(dev, files[0], f"video {i}".encode() * 1000)
        alarms.append({**stored, "i": i, "arrived": arrived,
                       "ts": dt.datetime.fromisoformat(stored["ts"].replace("Z", "+00:00"))})
    return Seeded(a, b, now, alarms)


def listed(env: Env, s: Seeded, *args: str) -> list[str]:
    items = env.json("alarms", "list", "--imei", s.a.imei, "--imei", s.b.imei, "--all", *args)
    return [item["id"] for item in items]


def test_no_filter_lists_all_newest_first(env: Env, seeded: Seeded) -> None:
    assert listed(env, seeded) == seeded.ids(lambda a: True)


@pytest.mark.parametrize("case", ["imei", "type", "since_relative", "until_rfc", "since_until", "bbox",
                                  "has_video", "no_video", "combined"])
def test_filter_returns_exactly_the_matching_alarms(env: Env, seeded: Seeded, case: str) -> None:
    s, now = seeded, seeded.now
    t45, t75 = now - dt.timedelta(minutes=45), now - dt.timedelta(minutes=75)
    args, pred = {
        "imei": (["--imei", s.a.imei], lambda a: a["imei"] == s.a.imei),
        "type": (["--type", "CRASH", "--type", "hard_brake"], lambda a: a["type"] in ("CRASH", "HARD_BRAKE")),
        "since_relative": (["--since", "35m"], lambda a: a["ts"] >= now - dt.timedelta(minutes=35)),
        "until_rfc": (["--until", rfc(t75)], lambda a: a["ts"] < t75),
        "since_until": (["--since", rfc(t75), "--until", rfc(t45)], lambda a: t75 <= a["ts"] < t45),
        "bbox": (["--bbox", "-2.75,40.25,-2.25,40.75"],
                 lambda a: 40.25 <= a["lat"] <= 40.75 and -2.75 <= a["lon"] <= -2.25),
        "has_video": (["--has-video"], lambda a: a["arrived"]),
        "no_video": (["--no-video"], lambda a: not a["arrived"]),
        "combined": (["--type", "CRASH", "--since", "2h", "--has-video"],
                     lambda a: a["type"] == "CRASH" and a["arrived"]),
    }[case]
    expected = s.ids(pred)
    assert expected, "the case must select something"
    if case == "imei":  # --imei A alone (the helper adds both devices)
        got = [x["id"] for x in env.json("alarms", "list", "--imei", s.a.imei, "--all")]
    else:
        got = listed(env, s, *args)
    assert got == expected


def test_items_carry_files_and_arrival(env: Env, seeded: Seeded) -> None:
    first = next(a for a in seeded.alarms if a["i"] == 0)
    shown = env.json("alarms", "show", first["id"])
    assert shown["files"] == [{"name": first["files"][0]["name"], "arrived": True}] or \
        [(f["name"], f["arrived"]) for f in shown["files"]] == [(first["files"][0]["name"], True)]
    pending = next(a for a in seeded.alarms if a["i"] == 3)
    assert [f["arrived"] for f in env.json("alarms", "show", pending["id"])["files"]] == [False]
    table = env.ok("alarms", "show", pending["id"]).stdout
    assert pending["id"] in table and "video pending" in table


def test_all_walks_every_page_once(env: Env, seeded: Seeded) -> None:
    expected = seeded.ids(lambda a: True)
    for size in ("1", "5", "12", "1000"):
        got = listed(env, seeded, "--limit", size)
        assert got == expected, size


def test_cursor_walk_by_hand_is_stable_under_inserts(env: Env, seeded: Seeded) -> None:
    s = seeded
    expected = s.ids(lambda a: True)
    got: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        extra = ["--cursor", cursor] if cursor else []
        result = env.ok("alarms", "list", "--imei", s.a.imei, "--imei", s.b.imei, "--limit", "5", "--json", *extra)
        got += [item["id"] for item in json.loads(result.stdout)]
        pages += 1
        if pages == 1:  # a newer alarm arriving mid-walk neither shifts nor repeats the later pages
            new = env.post_alarm(s.b, type="VIBRATION", ts=rfc(dt.datetime.now(UTC)), lat=1, lon=1)
            s.alarms.append({**new, "i": 99, "arrived": False,
                             "ts": dt.datetime.fromisoformat(new["ts"].replace("Z", "+00:00"))})
        match = re.search(r"--cursor (\S+)", result.stderr)
        if not match:
            break
        cursor = match.group(1)
    assert pages == 3
    assert got == expected and len(set(got)) == len(got)


def test_csv_and_table_output(env: Env, seeded: Seeded) -> None:
    out = env.ok("alarms", "list", "--imei", seeded.a.imei, "--all", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == seeded.ids(lambda a: a["imei"] == seeded.a.imei)
    assert {"id", "ts", "imei", "type", "status"} <= set(rows[0])
    table = env.ok("alarms", "list", "--imei", seeded.a.imei, "--all").stdout
    assert seeded.alarms[0]["id"] in table and "CRASH" in table


def test_ack_then_clear_and_status_filter(env: Env, seeded: Seeded) -> None:
    s = seeded
    one, two = s.alarms[1], s.alarms[2]
    acked = env.json("alarms", "ack", one["id"], "--note", "driver called")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "admin"
    assert acked["ack_note"] == "driver called"
    env.ok("alarms", "ack", two["id"])
    cleared = env.json("alarms", "clear", two["id"])
    assert cleared["status"] == "cleared" and cleared["cleared_by"] == "admin"
    assert listed(env, s, "--status", "acknowledged") == [one["id"]]
    assert listed(env, s, "--status", "cleared") == [two["id"]]
    active = listed(env, s, "--status", "active")
    assert one["id"] not in active and two["id"] not in active
    assert set(active) | {one["id"], two["id"]} >= set(s.ids(lambda a: True))


def _alarms(env: Env, dev: Device, n: int) -> list[str]:
    now = dt.datetime.now(UTC)
    return [env.post_alarm(dev, type="VIBRATION", ts=rfc(now - dt.timedelta(seconds=i + 1)), lat=1.0, lon=2.0)["id"]
            for i in range(n)]


def _statuses(env: Env, dev: Device) -> dict[str, str]:
    return {a["id"]: a["status"] for a in env.json("alarms", "list", "--imei", dev.imei, "--all")}


def test_ack_and_clear_several_ids(env: Env) -> None:
    dev = env.register("bulk-ids")
    one, two, three = _alarms(env, dev, 3)
    acked = env.json("alarms", "ack", one, two, "--note", "seen")
    assert sorted(a["id"] for a in acked) == sorted([one, two])
    assert {a["status"] for a in acked} == {"acknowledged"} and {a["ack_note"] for a in acked} == {"seen"}
    # an unknown id is reported, the others are still changed; exit 4
    missing = str(uuid.uuid4())
    result = env.run("alarms", "clear", one, missing, three)
    assert result.exit_code == 4, result.output
    assert f"clear {missing}: not found" in result.stderr and "cleared 2 of 3 alarms" in result.stderr
    assert _statuses(env, dev) == {one: "cleared", two: "acknowledged", three: "cleared"}
    # clearing a cleared alarm is a conflict: exit 1
    result = env.run("alarms", "clear", one, two)
    assert result.exit_code == 1 and "conflict" in result.stderr and _statuses(env, dev)[two] == "cleared"


def test_ack_by_filters_asks_above_ten(env: Env) -> None:
    dev = env.register("bulk-filters")
    ids = _alarms(env, dev, 12)
    result = env.run("alarms", "ack", "--imei", dev.imei, input="n\n")
    assert result.exit_code == 1 and "Acknowledge 12 alarms?" in result.stderr and "nothing changed" in result.stderr
    assert set(_statuses(env, dev).values()) == {"active"}

    result = env.run("alarms", "ack", "--imei", dev.imei, "--since", "1h", input="y\n")
    assert result.exit_code == 0, result.output
    assert "acknowledged 12 of 12 alarms" in result.stderr and all(i in result.stdout for i in ids)
    assert set(_statuses(env, dev).values()) == {"acknowledged"}
    # only active alarms are acknowledged by filters: nothing left
    result = env.run("alarms", "ack", "--imei", dev.imei, "--yes")
    assert result.exit_code == 0 and "no alarm matches" in result.stderr

    cleared = env.json("alarms", "clear", "--imei", dev.imei, "--type", "vibration", "--yes")
    assert sorted(a["id"] for a in cleared) == sorted(ids) and {a["status"] for a in cleared} == {"cleared"}


def test_ten_or_fewer_need_no_confirmation(env: Env) -> None:
    dev = env.register("bulk-few")
    ids = _alarms(env, dev, 10)
    result = env.run("alarms", "clear", "--imei", dev.imei)  # no input: a question would fail
    assert result.exit_code == 0 and "cleared 10 of 10 alarms" in result.stderr
    assert _statuses(env, dev) == {i: "cleared" for i in ids}


def test_status_is_repeatable(env: Env) -> None:
    dev = env.register("statuses")
    a, b, c = _alarms(env, dev, 3)
    env.ok("alarms", "ack", a)
    env.ok("alarms", "clear", b)
    for args in (["--status", "acknowledged", "--status", "cleared"], ["--status", "acknowledged,cleared"]):
        got = [x["id"] for x in env.json("alarms", "list", "--imei", dev.imei, *args)]
        assert sorted(got) == sorted([a, b]), args
    assert [x["id"] for x in env.json("alarms", "list", "--imei", dev.imei, "--status", "active")] == [c]


def test_ids_or_filters(env: Env) -> None:
    result = env.run("alarms", "ack")
    assert result.exit_code == 2 and "give the ids" in result.stderr
    result = env.run("alarms", "clear", str(uuid.uuid4()), "--since", "1h")
    assert result.exit_code == 2 and "not both" in result.stderr


@pytest.mark.parametrize("args", [
    ["alarms", "list", "--since", "1h", "--until", "2h"],
    ["alarms", "list", "--since", "2026-11-28T10:00:00Z", "--until", "2026-11-28T10:00:00Z"],
    ["alarms", "ack", "--since", "10m", "--until", "3h"],
    ["locations", "track", "{imei}", "--since", "1h", "--until", "1d"],
])
def test_until_before_since_is_exit_2(env: Env, seeded: Seeded, args: list[str]) -> None:
    result = env.run(*(a.format(imei=seeded.a.imei) for a in args))
    assert result.exit_code == 2, result.output
    assert "--until" in result.stderr and "must be after --since" in result.stderr


@pytest.mark.parametrize("args", [
    ["alarms", "list", "--imei", "{seeded},{unknown}"], ["alarms", "clear", "--imei", "{unknown}", "--yes"],
    ["locations", "latest", "--imei", "{unknown}"], ["locations", "track", "{unknown}"],
    ["videos", "list", "{unknown}"], ["watch", "--imei", "{unknown}", "--json", "--seconds", "1"],
    ["devices", "show", "{unknown}"],
])
def test_unregistered_imei_is_exit_4(env: Env, seeded: Seeded, args: list[str]) -> None:
    unknown = new_imei()
    result = env.run(*(a.format(seeded=seeded.a.imei, unknown=unknown) for a in args))
    assert result.exit_code == 4, result.output
    assert unknown in result.stderr and "not registered" in result.stderr and "(nothing)" not in result.output


@pytest.mark.parametrize("value", ["12345", "356938035643800", "abcdefghijklmno"])
def test_malformed_imei_is_exit_2(env: Env, value: str) -> None:
    result = env.run("alarms", "list", "--imei", value)
    assert result.exit_code == 2 and "IMEI" in result.stderr


def test_unknown_output_extension_is_exit_2(env: Env, seeded: Seeded) -> None:
    out = env.tmp / "track.kmz"
    result = env.run("locations", "track", seeded.a.imei, "-o", str(out))
    assert result.exit_code == 2 and ".kmz" in result.stderr and ".gpx" in result.stderr
    assert not out.exists()
    env.ok("locations", "track", seeded.a.imei, "-o", str(out), "--format", "gpx")  # an explicit format is fine
    assert out.read_text().startswith("<?xml")
