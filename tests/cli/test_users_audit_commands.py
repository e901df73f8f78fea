"""truckx users passwd / users role / whoami (the role from the server) / audit / commands list and
commands cancel, against the real server."""

from __future__ import annotations

import json
import time

from tests.cli.support import ADMIN_PASSWORD, Env

PASSWORD = "operator-password-1"
NEW_PASSWORD = "operator-password-2"


def _login_status(env: Env, username: str, password: str) -> int:
    return env.http.post("/api/v1/admin/login", json={"username": username, "password": password}).status_code


def _as(env: Env, username: str, password: str) -> dict[str, str | None]:
    """A CLI environment logged in (saved credentials) as ``username``."""
    cli = env.cli_env(env.config_dir())
    pw = env.tmp / f"{username}-pw"
    pw.write_text(password + "\n")
    env.ok("login", env.url, "-u", username, "--password-file", str(pw), env=cli)
    return cli


def test_whoami_role_and_passwd(env: Env) -> None:
    pw = env.tmp / "olive-pw"
    pw.write_text(PASSWORD + "\n")
    assert env.json("users", "add", "olive", "--role", "operator", "--password-file", str(pw))["role"] == "operator"
    olive = _as(env, "olive", PASSWORD)
    me = env.json("whoami", env=olive)
    assert (me["username"], me["role"]) == ("olive", "operator")

    # your own password: the current one first, then the new one; a wrong current one is refused
    result = env.run("users", "passwd", "--password-stdin", env=olive, input=f"wrong-password\n{NEW_PASSWORD}\n")
    assert result.exit_code == 3 and "current_password is wrong" in result.stderr
    result = env.ok("users", "passwd", "--password-stdin", env=olive, input=f"{PASSWORD}\n{NEW_PASSWORD}\n")
    assert "logged in again" in result.stderr
    assert _login_status(env, "olive", PASSWORD) == 401 and _login_status(env, "olive", NEW_PASSWORD) == 200
    assert env.json("whoami", env=olive)["role"] == "operator"  # the saved token was renewed
    # another user's password: only an admin
    result = env.run("users", "passwd", "admin", "--password-stdin", env=olive, input="whatever-password\n")
    assert result.exit_code == 3 and "only an admin" in result.stderr
    other = env.tmp / "olive-third"
    other.write_text("operator-password-3\n")
    result = env.ok("users", "passwd", "olive", "--password-file", str(other))  # as admin
    assert "olive" in result.stderr
    assert _login_status(env, "olive", "operator-password-3") == 200
    result = env.run("whoami", env=olive)  # olive's token went with the admin's change
    assert result.exit_code == 3 and "truckx login" in result.stderr


def test_role_changes_revoke_and_whoami_shows_the_new_role(env: Env) -> None:
    pw = env.tmp / "rex-pw"
    pw.write_text(PASSWORD + "\n")
    env.ok("users", "add", "rex", "--role", "viewer", "--password-file", str(pw))
    rex = _as(env, "rex", PASSWORD)
    assert env.json("whoami", env=rex)["role"] == "viewer"
    result = env.run("users", "role", "admin", "viewer", env=rex)
    assert result.exit_code == 3 and "forbidden" in result.stderr and "only read" in result.stderr

    assert env.json("users", "role", "rex", "operator")["role"] == "operator"
    assert env.run("whoami", env=rex).exit_code == 3  # revoked
    rex = _as(env, "rex", PASSWORD)
    assert env.json("whoami", env=rex)["role"] == "operator"
    result = env.run("users", "role", "admin", "viewer")  # the last admin
    assert result.exit_code == 1 and "last admin" in result.stderr
    result = env.run("users", "role", "rex", "root")
    assert result.exit_code == 2


def test_commands_list_and_cancel(env: Env) -> None:
    dev = env.register("cli-cancel")
    first = env.json("commands", "send", dev.imei, "reset")
    second = env.json("commands", "send", dev.imei, "set_report_interval", "--seconds", "20")
    listed = env.json("commands", "list", "--imei", dev.imei)
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    assert second["id"] in env.ok("commands", "list", "--imei", dev.imei).stdout

    cancelled = env.json("commands", "cancel", first["id"])
    assert cancelled["status"] == "cancelled" and cancelled["id"] == first["id"]
    result = env.run("commands", "cancel", first["id"])
    assert result.exit_code == 1 and "only a queued command can be cancelled" in result.stderr
    assert env.run("commands", "cancel", "6f1c7a57-4a44-4e38-9f4f-3c0e8f1d2b3a").exit_code == 4
    assert [c["id"] for c in env.json("commands", "list", "--imei", dev.imei, "--status", "cancelled")] == \
        [first["id"]]
    assert [c["id"] for c in env.json("commands", "list", "--imei", dev.imei, "--status", "queued",
                                      "--status", "sent")] == [second["id"]]
    # the device only ever gets the one that was not cancelled
    with env.connect(dev) as conn:
        conn.send_points([{"ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0}])
        conn.wait_ack(conn.seq)
        assert [c["id"] for c in conn.commands] == [second["id"]]
    # cancelled is final: status --wait returns at once
    started = time.monotonic()
    result = env.run("commands", "status", first["id"], "--wait", "30")
    assert result.exit_code == 0 and "cancelled" in result.stdout and time.monotonic() - started < 15


def test_audit(env: Env) -> None:
    dev = env.register("cli-audit")
    env.ok("devices", "rename", dev.imei, "audited truck")
    entries = env.json("audit", "--all")
    assert entries[0]["action"] == "device.rename" and entries[0]["actor"] == "admin"
    assert entries[0]["target"] == dev.imei and entries[0]["detail"] == {"name": "audited truck"}
    only = env.json("audit", "--action", "device.rename", "--target", dev.imei)
    assert [(e["action"], e["target"]) for e in only] == [("device.rename", dev.imei)]
    assert env.json("audit", "--actor", "nobody") == []
    table = env.ok("audit", "--action", "device.register", "--limit", "1").stdout
    assert "device.register" in table and dev.imei in table
    csv = env.ok("audit", "--target", dev.imei, "--csv").stdout.splitlines()
    assert csv[0].split(",")[:4] == ["at", "actor", "action", "target"] and len(csv) == 3
    assert env.run("audit", "--action", "device.explode").exit_code == 2
    pw = env.tmp / "ivy-pw"
    pw.write_text(PASSWORD + "\n")
    env.ok("users", "add", "ivy", "--role", "operator", "--password-file", str(pw))
    result = env.run("audit", env=_as(env, "ivy", PASSWORD))
    assert result.exit_code == 3 and "forbidden" in result.stderr
    assert ADMIN_PASSWORD not in json.dumps(env.json("audit", "--all"))
