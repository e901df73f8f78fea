"""``truckx users passwd`` and ``truckx users role``: change a password (your own, or anyone's as an admin)
or a user's role (admin). Either revokes every token of that user issued before."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .client import EXIT_USAGE, Client, CliError, client_of, seg, settings_of
from .common import command, view_of
from .output import JSON_OPT, info, print_object
from .users import BASE, Role


def _first_line(path: Path, what: str) -> str:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the {what} file {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    return text.splitlines()[0] if text.strip() else ""


def _stdin_line() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def passwd(ctx: typer.Context,
           username: Optional[str] = typer.Argument(None, metavar="[USERNAME]", help="Whose password (default: "
                                                    "yours). Another user's needs an admin."),
           password_file: Optional[Path] = typer.Option(None, "--password-file", metavar="FILE",
                                                        help="Read the new password from this file."),
           password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin "
                                               "(changing your own: the current one on the first line, the new "
                                               "one on the second, unless --current-password-file)."),
           current_password_file: Optional[Path] = typer.Option(None, "--current-password-file", metavar="FILE",
                                                                help="Read your current password from this file."),
           ) -> None:
    """Change a password. Every token of that user issued before stops working; after changing your own,
    the saved profile is logged in again with the new password."""
    if password_file is not None and password_stdin:
        raise CliError("give at most one of --password-file and --password-stdin", EXIT_USAGE)
    client = client_of(ctx)
    me = client.get("/api/v1/admin/me", what="who am I")
    target = username or me["username"]
    own = target == me["username"]
    body: dict[str, str] = {}
    if own:
        if current_password_file is not None:
            current = _first_line(current_password_file, "current password")
        elif password_stdin:
            current = _stdin_line()
        else:
            current = typer.prompt("Current password", hide_input=True)
        if not current:
            raise CliError("the current password is empty", EXIT_USAGE)
        body["current_password"] = current
    elif current_password_file is not None:
        raise CliError("--current-password-file is for changing your own password", EXIT_USAGE)
    if password_file is not None:
        password = _first_line(password_file, "password")
    elif password_stdin:
        password = _stdin_line()
    else:
        password = typer.prompt(f"New password for {target}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise CliError("the new password is empty", EXIT_USAGE)
    body["password"] = password
    client.post(f"{BASE}/{seg(target, 'USERNAME')}/password", body, what=f"change the password of {target}")
    if not own:
        info(f"password of {target} changed; its tokens are revoked")
        return
    settings = settings_of(ctx)
    config = settings.config()
    name = config.active(settings.profile)
    saved = config.profiles.get(name)
    if settings.token or not saved or saved.get("token") != client.token or saved.get("username") != target:
        info("password changed; your tokens are revoked: log in again (truckx login)")
        return
    # the profile's token was one of those revoked: log in again with the new password and keep it working
    with Client(client.url, None, settings.timeout) as anonymous:
        login = anonymous.post("/api/v1/admin/login", {"username": target, "password": password}, what="login")
    config.profiles[name] = {**saved, "token": login["token"], "role": login.get("role"),
                             "expires_at": login.get("expires_at")}
    path = config.save()
    info(f"password changed; your older tokens are revoked; logged in again (profile {name!r} in {path})")


def role(ctx: typer.Context, username: str = typer.Argument(..., metavar="USERNAME", help="The user."),
         new_role: Role = typer.Argument(..., metavar="ROLE", help="admin, operator (reads; acknowledges and "
                                         "clears alarms; sends and cancels commands) or viewer (reads)."),
         as_json: bool = JSON_OPT) -> None:
    """Change a user's role (admin only; the last admin cannot be demoted). Its tokens are revoked."""
    user = client_of(ctx).patch(f"{BASE}/{seg(username, 'USERNAME')}", {"role": new_role.value},
                                what=f"change the role of {username}")
    print_object(user, as_json, view=view_of(ctx))
    if not as_json:
        info(f"{username} is now {user.get('role', new_role.value)}; its older tokens are revoked"
             " (unless it had that role already)")


def register(users_app: typer.Typer) -> None:
    command(users_app, example=["truckx users passwd", "truckx users passwd olive --password-file olive-password"],
            times=False)(passwd)
    command(users_app, example=["truckx users role olive operator", "truckx users role vera viewer --json"])(role)
