"""``truckx login`` / ``logout`` / ``whoami`` and ``truckx profiles``: admin tokens for one or more servers,
saved as named profiles under the user's config dir (mode 0600)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .client import (DEFAULT_URL, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_USAGE, Client, CliError, check_profile_name,
                     credentials_path, jwt_claims, normalise_url, settings_of)
from .common import Group, command, view_of
from .output import Col, Format, format_time, info, print_list, print_object

profiles_app = typer.Typer(help="Saved logins (profiles), one per server.", no_args_is_help=True,
                           cls=Group)


def _read_password(password_file: Path | None, password_stdin: bool) -> str:
    if password_file is not None and password_stdin:
        raise CliError("give at most one of --password-file and --password-stdin", EXIT_USAGE)
    if password_file is not None:
        try:
            text = password_file.read_text("utf-8")
        except OSError as exc:
            raise CliError(f"cannot read the password file {password_file}: {exc.strerror or exc}", EXIT_USAGE) from None
        return text.splitlines()[0] if text.strip() else ""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True)


def login(
    ctx: typer.Context,
    url: Optional[str] = typer.Argument(None, help="Server URL (default: --url / TRUCKX_URL, the profile's saved "
                                                    "one, or http://127.0.0.1:8888)."),
    username: str = typer.Option(..., "--username", "-u", prompt="Username", help="Admin or viewer user name."),
    password_file: Optional[Path] = typer.Option(None, "--password-file", metavar="FILE",
                                                 help="Read the password from this file's first line "
                                                      "(e.g. <data-dir>/admin-password)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    make_default: bool = typer.Option(False, "--default", help="Make this profile the default one."),
) -> None:
    """Log in and save the token as a profile (mode 0600) under the user's config dir.

    The profile is --profile NAME (or TRUCKX_PROFILE), else the default one, else "default". The first
    profile saved becomes the default; other commands use the default unless given --profile.
    """
    settings = settings_of(ctx)
    config = settings.config()
    name = config.active(settings.profile)
    saved = config.profiles.get(name, {})
    base = normalise_url(url or settings.url or saved.get("url") or DEFAULT_URL)
    password = _read_password(password_file, password_stdin)
    if not password:
        raise CliError("the password is empty", EXIT_USAGE)
    with Client(base, None, settings.timeout) as client:
        body = client.post("/api/v1/admin/login", {"username": username, "password": password}, what="login")
    token = body.get("token") if isinstance(body, dict) else None
    if not token:
        raise CliError("the server's login answer has no token")
    role = body.get("role") or jwt_claims(token).get("role")
    config.profiles[name] = {"url": base, "token": token, "username": username, "role": role,
                             "expires_at": body.get("expires_at")}
    if make_default or not config.default or config.default not in config.profiles:
        config.default = name
    path = config.save()
    info(f"Logged in to {base} as {username} (role {role}); token saved as profile {name!r} in {path}"
         + (f", valid until {body['expires_at']}" if body.get("expires_at") else ""))
    if config.default != name:
        info(f"the default profile is {config.default!r}: use --profile {name} (or TRUCKX_PROFILE={name}), "
             f"or `truckx profiles use {name}`")
    if os.environ.get("TRUCKX_TOKEN"):
        info("note: TRUCKX_TOKEN is set and overrides the saved token")


def logout(ctx: typer.Context) -> None:
    """Forget the token of the profile (--profile, else the default one)."""
    settings = settings_of(ctx)
    config = settings.config()
    name = config.active(settings.profile)
    if not config.remove(name):
        info(f"Not logged in (no saved profile {name!r})")
        return
    config.save()
    info(f"Logged out of profile {name!r}" + (f"; the default profile is now {config.default!r}"
                                               if config.default else f" (removed {credentials_path()})"))


def whoami(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the profile, server, user and role of the current token, and check it with the server."""
    settings = settings_of(ctx)
    token = settings.resolved_token()
    if not token:
        raise CliError("not logged in: run `truckx login URL` (or set TRUCKX_TOKEN)", EXIT_AUTH)
    url = settings.resolved_url()
    claims = jwt_claims(token)
    expires = claims.get("exp")
    with Client(url, token, settings.timeout) as client:
        me = client.get("/api/v1/admin/me", what="whoami")  # 401 here means: log in again
    info_obj = {
        "profile": None if settings.token else settings.profile_name(),
        "url": url,
        "username": me.get("username") or claims.get("sub"),
        "role": me.get("role") or claims.get("role"),
        "expires_at": format_time(dt.datetime.fromtimestamp(expires, dt.timezone.utc))
        if isinstance(expires, (int, float)) else None,
        "token_from": "TRUCKX_TOKEN / --token" if settings.token else str(credentials_path()),
    }
    print_object(info_obj, as_json, view=view_of(ctx))


# -- profiles ------------------------------------------------------------------------------------

PROFILE_COLUMNS = [Col("Default", lambda p: "*" if p["default"] else "", cut=1, priority=1),
                   Col("Profile", "name", cut=None, priority=0),
                   Col("URL", "url", cut=20, priority=1), Col("User", "username", cut=8, priority=2),
                   Col("Role", "role", cut=5, priority=3), Col("Expires", "expires_at", time=True, priority=4)]


@command(profiles_app, "list", example="truckx profiles list")
def profiles_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the saved profiles (never their tokens); * marks the default."""
    config = settings_of(ctx).config()
    items = [{"name": name, "default": name == config.default, "url": p.get("url"), "username": p.get("username"),
              "role": p.get("role"), "expires_at": p.get("expires_at")} for name, p in sorted(config.profiles.items())]
    print_list(items, PROFILE_COLUMNS, Format.json if as_json else Format.table, view_of(ctx))


@command(profiles_app, "use", example="truckx profiles use staging", times=False)
def profiles_use(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Make a saved profile the default one."""
    config = settings_of(ctx).config()
    check_profile_name(name)
    if name not in config.profiles:
        raise CliError(f"no saved profile {name!r} (saved: {', '.join(sorted(config.profiles)) or 'none'})",
                       EXIT_NOT_FOUND)
    config.default = name
    config.save()
    info(f"the default profile is now {name!r} ({config.profiles[name].get('url')})")


def register(app: typer.Typer) -> None:
    command(app, example=["truckx login http://127.0.0.1:8888 -u admin --password-file truckx-data/admin-password",
                          "truckx login --profile staging https://staging.example.com -u admin"],
            times=False)(login)
    command(app, example="truckx logout --profile staging", times=False)(logout)
    command(app, example="truckx whoami --profile prod")(whoami)
