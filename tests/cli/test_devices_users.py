"""truckx devices ... and truckx users ..., including a viewer refused a change with 403."""

from __future__ import annotations

import csv
import io
import stat

from tests.cli.support import Env, new_imei


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


def test_devices_show(env: Env) -> None:
    dev = env.register("show-me")
    with env.connect(dev) as conn:
        conn.wait_ack(conn.send_points([{"ts": "2026-01-02T03:04:05Z", "lat": 41.5, "lon": 2.25, "speed_kmh": 12.5}]))
        shown = env.json("devices", "show", dev.imei)
        assert shown["imei"] == dev.imei and shown["name"] == "show-me" and shown["online"] is True
        assert shown["last_location"]["lat"] == 41.5
        table = env.ok("devices", "show", dev.imei, "--tz", "UTC").stdout
    assert "show-me" in table and "41.50000,2.25000 (12.5 km/h)" in table
    assert "2026-01-02 03:04:05 UTC" in table
    missing = env.run("devices", "show", new_imei())
    assert missing.exit_code == 4 and "not registered" in missing.stderr
    bad = env.run("devices", "show", "356938035643800")
    assert bad.exit_code == 2 and "check digit" in bad.stderr


def test_devices_list_filters(env: Env) -> None:
    tag = new_imei()[-6:]
    names = [f"Filter-{tag}-Alpha-1", f"filter-{tag}-alpha-2", f"filter-{tag}-beta-3"]
    devs = [env.register(n) for n in names]
    env.register(None)  # no name: never matches --name
    with env.connect(devs[0]):
        def imeis(*args: str) -> list[str]:
            return [d["imei"] for d in env.json("devices", "list", *args)]

        assert imeis("--online", "--name", f"filter-{tag}") == [devs[0].imei]
        assert imeis("--offline", "--name", f"filter-{tag}") == [devs[1].imei, devs[2].imei]
        assert imeis("--name", f"*{tag}-ALPHA-?") == [devs[0].imei, devs[1].imei]  # a glob, any case
        assert imeis("--name", f"{tag}-beta") == [devs[2].imei]  # a part of the name
        assert imeis("--name", f"{tag}-alpha", "--limit", "1") == [devs[0].imei]
        assert imeis("--name", f"nothing-{tag}") == []
        online = {d["imei"] for d in env.json("devices", "list", "--online")}
        assert devs[0].imei in online and not {devs[1].imei, devs[2].imei} & online


def test_import_names_the_rows_with_problems(env: Env) -> None:
    good, taken = new_imei(), new_imei()
    src = env.tmp / "problems.csv"
    src.write_text("imei,name\n"
                   f"{good},ok truck\n"
                   "12345,short\n"
                   f"{good[:14]}{(int(good[14]) + 1) % 10},bad check digit\n"
                   "\n"
                   f"{good},twice\n"
                   f"{new_imei()},{'x' * 129}\n"
                   ",no imei\n")
    result = env.run("devices", "import", str(src))
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert "5 rows cannot be imported; nothing was registered" in err
    assert f"{src} line 3: IMEI '12345' is not 15 digits" in err
    assert f"{src} line 4: IMEI {good[:14]}" in err and "wrong check digit" in err
    assert f"{src} line 6: IMEI {good} is also on line 2" in err
    assert f"{src} line 7: the name is 129 characters long" in err
    assert f"{src} line 8: no IMEI" in err
    assert good not in {d["imei"] for d in env.json("devices", "list", "--all")}

    env.json("devices", "add", taken)
    again = env.tmp / "taken.csv"
    again.write_text(f"{good}\n{taken}\n")
    result = env.run("devices", "import", str(again))
    assert result.exit_code == 1 and "conflict" in result.stderr
    assert f"{again} line 2: IMEI {taken} is already registered" in result.stderr
    assert good not in {d["imei"] for d in env.json("devices", "list", "--all")}
