"""``truckx login`` / ``logout`` / ``whoami``: the admin token, saved under the user's config dir (0600)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .client import (EXIT_USAGE, Client, CliError, credentials_path, delete_credentials, jwt_claims,
                     load_credentials, normalise_url, save_credentials, settings_of)
from .output import format_time, info, print_object


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
    url: Optional[str] = typer.Argument(None, help="Server URL (default: --url / TRUCKX_URL, the saved one, "
                                                    "or http://127.0.0.1:8888)."),
    username: str = typer.Option(..., "--username", "-u", prompt="Username", help="Admin or viewer user name."),
    password_file: Optional[Path] = typer.Option(None, "--password-file", help="Read the password from this "
                                                 "file's first line (e.g. <data-dir>/admin-password)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Log in and save the token (mode 0600) under the user's config dir."""
    settings = settings_of(ctx)
    base = normalise_url(url or settings.url or load_credentials().get("url") or "http://127.0.0.1:8888")
    password = _read_password(password_file, password_stdin)
    if not password:
        raise CliError("the password is empty", EXIT_USAGE)
    with Client(base, None, settings.timeout) as client:
        body = client.post("/api/v1/admin/login", {"username": username, "password": password}, what="login")
    token = body.get("token") if isinstance(body, dict) else None
    if not token:
        raise CliError("the server's login answer has no token")
    role = body.get("role") or jwt_claims(token).get("role")
    path = save_credentials({"url": base, "token": token, "username": username, "role": role,
                             "expires_at": body.get("expires_at")})
    info(f"Logged in to {base} as {username} (role {role}); token saved to {path}"
         + (f", valid until {body['expires_at']}" if body.get("expires_at") else ""))
    if os.environ.get("TRUCKX_TOKEN"):
        info("note: TRUCKX_TOKEN is set and overrides the saved token")


def logout() -> None:
    """Forget the saved token."""
    if delete_credentials():
        info(f"Logged out (removed {credentials_path()})")
    else:
        info("Not logged in (no saved token)")


def whoami(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the server, user and role of the current token, and check it with the server."""
    settings = settings_of(ctx)
    token = settings.resolved_token()
    if not token:
        raise CliError("not logged in: run `truckx login URL` (or set TRUCKX_TOKEN)", 3)
    url = settings.resolved_url()
    claims = jwt_claims(token)
    expires = claims.get("exp")
    with Client(url, token, settings.timeout) as client:
        me = client.get("/api/v1/admin/me", what="whoami")  # 401 here means: log in again
    info_obj = {
        "url": url,
        "username": me.get("username") or claims.get("sub"),
        "role": me.get("role") or claims.get("role"),
        "expires_at": format_time(dt.datetime.fromtimestamp(expires, dt.timezone.utc))
        if isinstance(expires, (int, float)) else None,
        "token_from": "TRUCKX_TOKEN / --token" if settings.token else str(credentials_path()),
    }
    print_object(info_obj, as_json)


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
