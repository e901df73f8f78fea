"""truckx commands (send --wait returns succeeded once the device answers) and truckx watch (the live
event feed, bounded by --count / --seconds)."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from tests.cli.support import ADMIN_PASSWORD, Device, Env, ServerThread, new_imei, server_settings
from tests.support import Probe
from truckx_cli.main import app as cli_app

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


def test_send_wait_to_an_offline_device_shows_each_state_change(env: Env) -> None:
    dev = env.register("cmd-later")
    done = threading.Event()

    def connect_later() -> None:
        time.sleep(1.0)
        with env.connect(dev) as conn:
            conn.answer_commands(ok=True, detail="rebooting")
            done.wait(20)

    t = threading.Thread(target=connect_later)
    t.start()
    try:
        result = env.run("commands", "send", dev.imei, "reset", "--wait", "--timeout", "20", "--tz", "UTC")
    finally:
        done.set()
        t.join()
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert f"device {dev.imei} is offline: the command stays queued until it connects" in err
    steps = [err.index(s) for s in (" is offline", f"device {dev.imei} is online", "-> succeeded (rebooting)")]
    assert steps == sorted(steps), err
    # each change as it happened: queued -> sent -> succeeded (or queued -> succeeded when the device's
    # answer reached the server before it had marked the command sent)
    changes = re.findall(r"^  \d\d:\d\d:\d\d  (\w+) -> (\w+)", err, re.M)
    assert changes in ([("queued", "sent"), ("sent", "succeeded")], [("queued", "succeeded")]), err
    assert "succeeded" in result.stdout


def test_send_wait_to_an_online_device_says_nothing_about_offline(env: Env) -> None:
    dev = env.register("cmd-now")
    with env.connect(dev) as conn:
        conn.answer_commands(ok=True)
        result = env.ok("commands", "send", dev.imei, "set_report_interval", "--seconds", "5", "--wait")
    # the device may answer before the server has answered the POST: then there is no "sent" to show
    assert "offline" not in result.stderr and "succeeded" in result.stderr


def test_watch_type_filter(env: Env) -> None:
    dev = env.register("typed")
    stop = threading.Event()

    def alarm_later() -> None:
        time.sleep(1.0)
        env.post_alarm(dev, type="CRASH", ts=dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), lat=1, lon=2)

    threads = [threading.Thread(target=_drive, args=(env, stop, dev)), threading.Thread(target=alarm_later)]
    for t in threads:
        t.start()
    try:
        result = env.ok("watch", "--imei", dev.imei, "--type", "alarm,command_status", "--json", "--count", "1",
                        "--seconds", "20")
    finally:
        stop.set()
        for t in threads:
            t.join()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["alarm"] and events[0]["alarm"]["type"] == "CRASH"
    bad = env.run("watch", "--type", "alarm,weather", "--json", "--seconds", "1")
    assert bad.exit_code == 2 and "weather" in bad.stderr


def _wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _server(data_dir: Path, port: int) -> ServerThread:
    """A server of its own (these tests stop it), on ``port`` (0: any free one)."""
    srv = ServerThread(server_settings(data_dir, port))
    srv.start()
    return srv


def _admin_token(url: str) -> str:
    with httpx.Client(base_url=url, timeout=15) as http:
        return http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD}).json()["token"]


def test_watch_reconnects_when_the_server_restarts(tmp_path: Path) -> None:
    def server(port: int) -> ServerThread:
        return _server(tmp_path / "data", port)

    first = server(0)
    port = first.server.port
    url = first.url
    with httpx.Client(base_url=url, timeout=15) as http:
        token = http.post("/api/v1/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD}).json()["token"]
        imei = new_imei()
        secret = http.post("/api/v1/admin/devices", json={"imei": imei},
                           headers={"Authorization": f"Bearer {token}"}).json()["secret"]

    def alarm(kind: str) -> None:
        with httpx.Client(base_url=url, timeout=15) as http:
            dev_token = http.post("/api/v1/device/login", json={"imei": imei, "secret": secret}).json()["token"]
            r = http.post("/api/v1/device/alarms", headers={"Authorization": f"Bearer {dev_token}"},
                          json={"type": kind, "ts": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                "lat": 1, "lon": 2})
            assert r.status_code == 201, r.text

    out: dict[str, Any] = {}
    cli_env = {"TRUCKX_URL": url, "TRUCKX_TOKEN": token, "TRUCKX_CONFIG_DIR": str(tmp_path / "cfg"), "COLUMNS": "200"}

    def watch() -> None:
        out["result"] = CliRunner().invoke(cli_app, ["watch", "--type", "alarm", "--json", "--count", "2",
                                                     "--seconds", "60"], env=cli_env)

    t = threading.Thread(target=watch)
    t.start()
    second = None
    try:
        _wait_for(lambda: Probe(first.server).feed_count == 1)
        alarm("CRASH")
        first.stop()
        time.sleep(1.0)  # down for a while: the watcher's first attempts fail
        second = server(port)
        _wait_for(lambda: Probe(second.server).feed_count == 1, 40)
        alarm("OVERSPEED")
        t.join(30)
    finally:
        if t.is_alive():
            t.join(60)
        if second is not None:
            second.stop()
    result = out["result"]
    assert result.exit_code == 0, (result.output, result.exception)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["alarm"]["type"] for e in events] == ["CRASH", "OVERSPEED"]
    assert "the server is restarting (code 1001); reconnecting in" in result.stderr
    assert "reconnected to" in result.stderr


def test_watch_without_reconnect_exits_when_the_feed_closes(tmp_path: Path) -> None:
    srv = _server(tmp_path / "data", 0)
    cli_env = {"TRUCKX_URL": srv.url, "TRUCKX_TOKEN": _admin_token(srv.url),
               "TRUCKX_CONFIG_DIR": str(tmp_path / "cfg")}
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(result=CliRunner().invoke(
        cli_app, ["watch", "--no-reconnect", "--json", "--seconds", "30"], env=cli_env)))
    t.start()
    try:
        _wait_for(lambda: Probe(srv.server).feed_count == 1)
    finally:
        srv.stop()
        t.join(30)
    result = out["result"]
    assert result.exit_code == 5 and "the server closed the event feed" in result.stderr, result.output
