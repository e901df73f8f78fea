"""truckx devices ... and truckx users ..., including a viewer refused a change with 403."""

from __future__ import annotations

import csv
import io
import stat

from tests.cli.conftest import Env, new_imei


def _device_login(env: Env, imei: str, secret: str) -> int:
    return env.http.post("/api/v1/device/login", json={"imei": imei, "secret": secret}).status_code


def test_add_list_rename_disable_enable_rotate(env: Env) -> None:
    imei = new_imei()
    added = env.json("devices", "add", imei, "--name", "truck one")
    assert added["imei"] == imei and added["name"] == "truck one" and added["secret"]
    assert _device_login(env, imei, added["secret"]) == 200

    listed = {d["imei"]: d for d in env.json("devices", "list", "--all")}
    assert listed[imei]["name"] == "truck one" and listed[imei]["enabled"] is True

    assert env.json("devices", "rename", imei, "truck 1")["name"] == "truck 1"
    assert env.json("devices", "disable", imei)["enabled"] is False
    assert _device_login(env, imei, added["secret"]) == 403
    assert env.json("devices", "enable", imei)["enabled"] is True
    assert _device_login(env, imei, added["secret"]) == 200

    rotated = env.json("devices", "rotate-secret", imei)
    assert rotated["secret"] and rotated["secret"] != added["secret"]
    assert _device_login(env, imei, added["secret"]) == 401
    assert _device_login(env, imei, rotated["secret"]) == 200

    # the table view names the device; a second add of the same IMEI is a one-line conflict
    assert imei in env.ok("devices", "list", "--all").stdout
    result = env.run("devices", "add", imei)
    assert result.exit_code == 1 and "conflict" in result.stderr


def test_import_csv(env: Env) -> None:
    imeis = [new_imei() for _ in range(5)]
    src = env.tmp / "fleet.csv"
    src.write_text("imei,name\n" + "".join(f"{i},truck {n}\n" for n, i in enumerate(imeis)))
    secrets_file = env.tmp / "fleet-secrets.csv"
    out = env.ok("devices", "import", str(src), "--csv", "-o", str(secrets_file)).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["imei"] for r in rows] == imeis and all(r["secret"] for r in rows)
    assert [r["name"] for r in rows] == [f"truck {n}" for n in range(5)]
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert list(csv.DictReader(io.StringIO(secrets_file.read_text()))) == rows
    for r in rows:
        assert _device_login(env, r["imei"], r["secret"]) == 200

    # all or none: a file with one registered and one new IMEI registers nothing
    fresh = new_imei()
    bad = env.tmp / "again.csv"
    bad.write_text(f"{fresh}\n{imeis[0]}\n")
    result = env.run("devices", "import", str(bad))
    assert result.exit_code == 1 and "conflict" in result.stderr
    assert fresh not in {d["imei"] for d in env.json("devices", "list", "--all")}


def test_users_and_viewer_is_refused_changes(env: Env) -> None:
    pw = env.tmp / "viewer-pw"
    pw.write_text("viewer-password-123\n")
    added = env.json("users", "add", "vera", "--role", "viewer", "--password-file", str(pw))
    assert added == {**added, "username": "vera", "role": "viewer"}
    users = {u["username"]: u["role"] for u in env.json("users", "list")}
    assert users["vera"] == "viewer" and users["admin"] == "admin"

    cfg = env.config_dir()
    viewer = env.cli_env(cfg)
    env.ok("login", env.url, "-u", "vera", "--password-file", str(pw), env=viewer)
    assert env.json("whoami", env=viewer)["role"] == "viewer"
    env.ok("devices", "list", env=viewer)  # a viewer may read

    for args in (["devices", "add", new_imei()], ["users", "add", "x", "--password-stdin"],
                 ["commands", "send", new_imei(), "reset"]):
        result = env.run(*args, env=viewer, input="pw\n")
        assert result.exit_code == 3, (args, result.output)
        line = result.stderr.strip()
        assert "\n" not in line and "forbidden" in line and "admin" in line and "viewer" in line, line
        assert "Traceback" not in result.output

    env.ok("users", "remove", "vera", "--yes")
    assert "vera" not in {u["username"] for u in env.json("users", "list")}
    # deleting the user revokes its token: the next call asks to log in again
    result = env.run("devices", "list", env=viewer)
    assert result.exit_code == 3 and "truckx login" in result.stderr
