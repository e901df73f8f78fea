"""truckx commands (send --wait returns succeeded once the device answers) and truckx watch (the live
event feed, bounded by --count / --seconds)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

from tests.cli.conftest import Device, Env, new_imei

UTC = dt.timezone.utc


def test_send_wait_returns_succeeded_once_the_device_answers(env: Env) -> None:
    dev = env.register("cmd-ok")
    with env.connect(dev) as conn:
        conn.answer_commands(ok=True, detail="rebooting")
        result = env.ok("commands", "send", dev.imei, "reset", "--wait", "--timeout", "20", "--json")
        cmd = json.loads(result.stdout)
        assert cmd["status"] == "succeeded" and cmd["command"] == "reset" and cmd["imei"] == dev.imei
        assert cmd["detail"] == "rebooting" and cmd["created_by"] == "admin"
        assert [c["id"] for c in conn.commands] == [cmd["id"]]
    assert env.json("commands", "status", cmd["id"])["status"] == "succeeded"
    assert "succeeded" in env.ok("commands", "status", cmd["id"]).stdout


def test_send_wait_reports_a_failure_with_exit_1(env: Env) -> None:
    dev = env.register("cmd-fail")
    with env.connect(dev) as conn:
        conn.answer_commands(ok=False, detail="sd card missing")
        result = env.run("commands", "send", dev.imei, "set_report_interval", "--seconds", "30", "--wait")
    assert result.exit_code == 1
    assert "failed" in result.stderr and "sd card missing" in result.stderr
    assert conn.commands[0]["command"] == "set_report_interval" and conn.commands[0]["args"] == {"seconds": 30}


def test_offline_device_command_is_queued_then_delivered(env: Env) -> None:
    dev = env.register("cmd-offline")
    start, end = "2h", "1h"
    queued = env.json("commands", "send", dev.imei, "request_video", "--from", start, "--to", end)
    assert queued["status"] == "queued" and set(queued["args"]) == {"from", "to"}
    # status --wait gives up after its time and shows the current state
    result = env.run("commands", "status", queued["id"], "--wait", "1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "queued"

    finished = threading.Event()

    def connect_later() -> None:
        time.sleep(0.5)
        with env.connect(dev) as conn:
            conn.answer_commands()
            finished.wait(15)

    t = threading.Thread(target=connect_later)
    t.start()
    try:
        done = env.json("commands", "status", queued["id"], "--wait", "15")
    finally:
        finished.set()
        t.join()
    assert done["status"] == "succeeded"


def test_send_to_unknown_device_is_404(env: Env) -> None:
    result = env.run("commands", "send", new_imei(), "reset")
    assert result.exit_code == 4 and "not registered" in result.stderr


def _drive(env: Env, stop: threading.Event, dev: Device) -> None:
    """A device that sends a position every 100 ms until ``stop``."""
    with env.connect(dev) as conn:
        i = 0
        while not stop.is_set():
            ts = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
            conn.wait_ack(conn.send_points([{"ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                             "lat": 10 + i * 0.001, "lon": 20.0}]))
            i += 1
            time.sleep(0.1)


def test_watch_json_follows_one_device(env: Env) -> None:
    watched, other = env.register("watched"), env.register("other")
    stop = threading.Event()
    threads = [threading.Thread(target=_drive, args=(env, stop, d)) for d in (watched, other)]
    for t in threads:
        t.start()
    try:
        result = env.ok("watch", "--imei", watched.imei, "--json", "--count", "5", "--seconds", "20")
    finally:
        stop.set()
        for t in threads:
            t.join()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 5
    assert {e["imei"] for e in events} == {watched.imei}
    assert {e["type"] for e in events} <= {"location", "device_status"} and "location" in {e["type"] for e in events}


def test_watch_live_view_shows_events(env: Env) -> None:
    dev = env.register("live")
    stop = threading.Event()
    t = threading.Thread(target=_drive, args=(env, stop, dev))
    t.start()
    try:
        result = env.ok("watch", "--imei", dev.imei, "--seconds", "1.5")
    finally:
        stop.set()
        t.join()
    assert "truckx events" in result.stdout and dev.imei in result.stdout and "location" in result.stdout


def test_watch_with_bad_token_is_exit_3(env: Env) -> None:
    result = env.run("watch", "--json", "--seconds", "1",
                     env=env.cli_env(TRUCKX_URL=env.url, TRUCKX_TOKEN="bad"))
    assert result.exit_code == 3 and "truckx login" in result.stderr and "Traceback" not in result.output
