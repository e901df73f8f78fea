"""truckx --version; every help page has an example and shows flags as flags; exit codes in --help and the
README; saved profiles for two servers (login --profile, TRUCKX_PROFILE, --profile before or after the
command, the default profile, 0600), and an old single-server config migrated."""

from __future__ import annotations

import json
import re
import stat
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import typer

from tests.cli.support import ADMIN_PASSWORD, Env, ServerThread, new_imei, server_settings
from truckx_cli.main import app as cli_app

README = Path(__file__).resolve().parents[2] / "README.md"
SECOND_PASSWORD = "second-server-admin-password"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subs = getattr(command, "commands", None)
    if subs is None:
        yield path
        return
    for name, sub in subs.items():
        yield from _commands(sub, path + (name,))


ALL_COMMANDS = sorted(_commands(typer.main.get_command(cli_app)))


def test_version(env: Env) -> None:
    result = env.ok("--version")
    assert result.stdout.strip() == f"truckx {metadata.version('truckx')}"


def test_root_help_lists_exit_codes(env: Env) -> None:
    out = env.ok("--help").stdout
    assert "Exit codes:" in out
    for code in ("0", "1", "2", "3", "4", "5", "130"):
        assert re.search(rf"^\W*{code}\s+\w", out, re.M), code
    assert "<bool>" not in out and "Examples:" in out


def test_readme_lists_the_same_exit_codes() -> None:
    text = README.read_text()
    section = text[text.index("Exit codes"):]
    for code, word in (("0", "success"), ("1", "fail"), ("2", "usage"), ("3", "log"), ("4", "not found"),
                       ("5", "unreachable"), ("130", "interrupt")):
        assert re.search(rf"^\|\s*`?{code}`?\s*\|[^\n]*{word}", section, re.M | re.I), code


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_has_an_example_and_flags_as_flags(env: Env, path: tuple[str, ...]) -> None:
    out = env.ok(*path, "--help").stdout
    assert "Example" in out and f"truckx {' '.join(path)}" in out, out
    assert "<bool>" not in out
    if path not in (("logout",), ("profiles", "use")):
        assert "--profile" in out


def test_group_help_has_no_bool_metavar(env: Env) -> None:
    for group in ("devices", "alarms", "profiles"):
        assert "<bool>" not in env.ok(group, "--help").stdout


# -- profiles --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Another server, with its own admin password and devices."""
    tmp = tmp_path_factory.mktemp("cli-second")
    srv = ServerThread(server_settings(tmp / "data", admin_password=SECOND_PASSWORD))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _register(url: str, password: str) -> str:
    with httpx.Client(base_url=url, timeout=15) as http:
        token = http.post("/api/v1/admin/login", json={"username": "admin", "password": password}).json()["token"]
        imei = new_imei()
        r = http.post("/api/v1/admin/devices", json={"imei": imei}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
    return imei


def _imeis(env: Env, *args: str, cli_env: dict[str, str | None]) -> set[str]:
    return {d["imei"] for d in json.loads(env.ok(*args, "--json", env=cli_env).stdout)}


def test_profiles_for_two_servers(env: Env, second: ServerThread) -> None:
    cfg = env.config_dir() / "truckx"  # created by the CLI
    plain = env.cli_env(cfg)
    pw2 = env.tmp / "second-password"
    pw2.write_text(SECOND_PASSWORD + "\n")
    env.ok("login", "--profile", "one", env.url, "-u", "admin", "--password-file", str(env.password_file), env=plain)
    result = env.ok("--profile", "two", "login", second.url, "-u", "admin", "--password-file", str(pw2), env=plain)
    assert "profile 'two'" in result.stderr and "the default profile is 'one'" in result.stderr

    cred = cfg / "credentials.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600 and stat.S_IMODE(cfg.stat().st_mode) == 0o700
    saved = json.loads(cred.read_text())
    assert saved["default"] == "one" and set(saved["profiles"]) == {"one", "two"}
    assert saved["profiles"]["two"]["url"] == second.url

    only_one, only_two = _register(env.url, ADMIN_PASSWORD), _register(second.url, SECOND_PASSWORD)
    assert only_one in _imeis(env, "devices", "list", "--all", cli_env=plain)  # the default profile
    for how in (("devices", "list", "--all", "--profile", "two"), ("--profile", "two", "devices", "list", "--all")):
        got = _imeis(env, *how, cli_env=plain)
        assert only_two in got and only_one not in got, how
    via_env = env.cli_env(cfg, TRUCKX_PROFILE="two")
    assert only_two in _imeis(env, "devices", "list", "--all", cli_env=via_env)
    # the option after the command wins over TRUCKX_PROFILE
    assert only_one in _imeis(env, "devices", "list", "--all", "--profile", "one", cli_env=via_env)
    assert env.json("whoami", "--profile", "two", env=plain)["profile"] == "two"

    listed = env.json("profiles", "list", env=plain)
    assert [(p["name"], p["default"], p["url"]) for p in listed] == [("one", True, env.url), ("two", False, second.url)]
    assert "token" not in json.dumps(listed)
    env.ok("profiles", "use", "two", env=plain)
    assert only_two in _imeis(env, "devices", "list", "--all", cli_env=plain)
    assert env.run("profiles", "use", "three", env=plain).exit_code == 4

    env.ok("logout", "--profile", "two", env=plain)
    saved = json.loads(cred.read_text())
    assert set(saved["profiles"]) == {"one"} and saved["default"] == "one"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600


def test_unknown_or_bad_profile(env: Env) -> None:
    cfg = env.config_dir()
    env.ok("login", env.url, "-u", "admin", "--password-file", str(env.password_file), env=env.cli_env(cfg))
    result = env.run("devices", "list", "--profile", "nope", env=env.cli_env(cfg))
    assert result.exit_code == 3 and "no saved profile 'nope'" in result.stderr and "truckx login" in result.stderr
    result = env.run("devices", "list", env=env.cli_env(cfg, TRUCKX_PROFILE="nope"))
    assert result.exit_code == 3
    assert env.run("devices", "list", "--profile", "../x", env=env.cli_env(cfg)).exit_code == 2
    assert env.run("--profile", "a b", "devices", "list", env=env.cli_env(cfg)).exit_code == 2


def test_single_server_config_of_an_older_truckx_keeps_working(env: Env) -> None:
    cfg = env.config_dir()
    cred = cfg / "credentials.json"
    cred.write_text(json.dumps({"url": env.url, "token": env.admin_token, "username": "admin", "role": "admin",
                                "expires_at": None}))
    cred.chmod(0o600)
    env.ok("devices", "list", env=env.cli_env(cfg))  # uses the old login
    migrated = json.loads(cred.read_text())
    assert migrated["default"] == "default"
    assert migrated["profiles"]["default"]["token"] == env.admin_token
    assert migrated["profiles"]["default"]["url"] == env.url
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert env.json("whoami", env=env.cli_env(cfg))["profile"] == "default"
