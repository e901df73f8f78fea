"""truckx login / whoami / logout, env-var overrides, and one-line errors with their exit codes."""

from __future__ import annotations

import json
import stat
import uuid

from tests.cli.support import ADMIN_PASSWORD, Env


def _no_traceback(result) -> None:  # noqa: ANN001
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_login_saves_token_0600_whoami_logout(env: Env) -> None:
    cfg = env.config_dir()
    plain = env.cli_env(cfg)
    result = env.ok("login", env.url, "--username", "admin", "--password-file", str(env.password_file), env=plain)
    assert "Logged in" in result.stderr and result.stdout == ""
    cred = cfg / "credentials.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    saved = json.loads(cred.read_text())
    assert saved["default"] == "default"
    profile = saved["profiles"]["default"]
    assert profile["url"] == env.url and profile["token"] and profile["role"] == "admin"

    me = env.json("whoami", env=plain)
    assert me["username"] == "admin" and me["role"] == "admin" and me["url"] == env.url

    env.ok("logout", env=plain)
    assert not cred.exists()
    result = env.run("whoami", env=plain)
    assert result.exit_code == 3 and "truckx login" in result.stderr
    _no_traceback(result)


def test_login_prompts_for_username_and_password(env: Env) -> None:
    cfg = env.config_dir()
    result = env.run("login", env.url, env=env.cli_env(cfg), input=f"admin\n{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert ADMIN_PASSWORD not in result.output  # the password prompt does not echo
    assert env.json("whoami", env=env.cli_env(cfg))["username"] == "admin"


def test_wrong_password_is_one_line_exit_3(env: Env) -> None:
    result = env.run("login", env.url, "-u", "admin", "--password-stdin", env=env.cli_env(), input="nope\n")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "wrong username or password" in result.stderr
    _no_traceback(result)


def test_env_vars_override_saved_login(env: Env) -> None:
    cfg = env.config_dir()
    env.ok("login", env.url, "-u", "admin", "--password-file", str(env.password_file), env=env.cli_env(cfg))
    # a bad TRUCKX_TOKEN wins over the saved good one
    result = env.run("devices", "list", env=env.cli_env(cfg, TRUCKX_TOKEN="not-a-jwt"))
    assert result.exit_code == 3 and "truckx login" in result.stderr
    # TRUCKX_URL wins over the saved URL
    result = env.run("devices", "list", env=env.cli_env(cfg, TRUCKX_URL="http://127.0.0.1:1"))
    assert result.exit_code == 5
    # with neither, the saved login works
    env.ok("devices", "list", env=env.cli_env(cfg))


def test_unreachable_server_exit_5(env: Env) -> None:
    result = env.run("alarms", "list", env=env.cli_env(TRUCKX_URL="http://127.0.0.1:1", TRUCKX_TOKEN="x"))
    assert result.exit_code == 5
    assert "cannot reach the server" in result.stderr and result.stderr.count("\n") == 1
    _no_traceback(result)
    result = env.run("watch", "--json", "--count", "1",
                     env=env.cli_env(TRUCKX_URL="http://127.0.0.1:1", TRUCKX_TOKEN="x"))
    assert result.exit_code == 5
    _no_traceback(result)


def test_not_logged_in_exit_3(env: Env) -> None:
    result = env.run("devices", "list", env=env.cli_env(TRUCKX_URL=env.url))
    assert result.exit_code == 3 and "not logged in" in result.stderr
    _no_traceback(result)


def test_not_found_exit_4(env: Env) -> None:
    result = env.run("alarms", "show", str(uuid.uuid4()))
    assert result.exit_code == 4 and "not found" in result.stderr
    _no_traceback(result)
    result = env.run("videos", "download", env.register().imei, "nothing.mp4", "-o", str(env.tmp / "x.mp4"))
    assert result.exit_code == 4
    _no_traceback(result)


def test_validation_errors_exit_2(env: Env) -> None:
    result = env.run("devices", "add", "123456789012345")  # bad Luhn digit: the server says 400
    assert result.exit_code == 2 and "invalid_argument" in result.stderr and "Luhn" in result.stderr
    _no_traceback(result)
    for args in (["alarms", "list", "--since", "yesterday-ish"], ["alarms", "list", "--bbox", "1,2,3"],
                 ["alarms", "list", "--type", "FIRE"], ["alarms", "list", "--json", "--csv"],
                 ["commands", "send", "356938035643809", "set_report_interval"]):
        result = env.run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("truckx: error:") and result.stderr.count("\n") == 1, result.stderr
        _no_traceback(result)
    # a usage error of the command line itself (Typer) is 2 too
    assert env.run("alarms", "list", "--limit", "0").exit_code == 2


def test_arguments_cannot_change_the_request_path(env: Env) -> None:
    result = env.run("devices", "rename", "../users/admin", "x")
    assert result.exit_code == 2 and "imei" in result.stderr.lower()
    _no_traceback(result)
    for args in (["videos", "download", "356938035643809", ""], ["videos", "download", "356938035643809", "../x"],
                 ["alarms", "show", ".."]):
        result = env.run(*args)
        assert result.exit_code == 2, (args, result.output)
        _no_traceback(result)
    assert {u["username"] for u in env.json("users", "list")} >= {"admin"}
