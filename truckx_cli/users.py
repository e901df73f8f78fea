"""``truckx users``: admin and viewer accounts."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer

from .client import EXIT_USAGE, CliError, client_of, seg
from .common import Group, command, view_of
from .output import CSV_OPT, JSON_OPT, Col, choose, info, print_list, print_object

app = typer.Typer(help="Manage admin and viewer accounts.", no_args_is_help=True, cls=Group)

BASE = "/api/v1/admin/users"
COLUMNS = [Col("Username", "username", cut=None, priority=0), Col("Role", "role", cut=None, priority=1),
           Col("Created", "created_at", time=True, priority=2)]


class Role(str, enum.Enum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"


@command(app, "list", example=["truckx users list", "truckx users list --csv"])
def list_(ctx: typer.Context, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List accounts."""
    fmt = choose(as_json, as_csv)
    items: list = []
    for page, _next in client_of(ctx).pages(BASE, [], limit=None, cursor=None, follow=True):
        items.extend(page)
    print_list(items, COLUMNS, fmt, view_of(ctx))


@command(app, example=["truckx users add vera --role viewer",
                       "truckx users add ops --role admin --password-file ops-password"], times=False)
def add(ctx: typer.Context, username: str = typer.Argument(..., metavar="USERNAME"),
        role: Role = typer.Option(Role.viewer, "--role", "-r", help="admin (may change things), operator (reads; "
                                  "acks and clears alarms; sends and cancels commands) or viewer (read only)."),
        password_file: Optional[Path] = typer.Option(None, "--password-file", metavar="FILE",
                                                     help="Read the password from this file."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
        as_json: bool = JSON_OPT) -> None:
    """Create an account (the password is prompted for unless given by file or stdin)."""
    if password_file is not None and password_stdin:
        raise CliError("give at most one of --password-file and --password-stdin", EXIT_USAGE)
    if password_file is not None:
        try:
            password = (password_file.read_text("utf-8").splitlines() or [""])[0]
        except OSError as exc:
            raise CliError(f"cannot read {password_file}: {exc.strerror or exc}", EXIT_USAGE) from None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise CliError("the password is empty", EXIT_USAGE)
    body = client_of(ctx).post(BASE, {"username": username, "password": password, "role": role.value},
                               what=f"add user {username}")
    user = body if isinstance(body, dict) and body.get("username") else {"username": username, "role": role.value}
    user = {k: v for k, v in user.items() if k not in ("password", "password_hash")}
    print_object(user, as_json)


@command(app, example="truckx users remove vera --yes", times=False)
def remove(ctx: typer.Context, username: str = typer.Argument(..., metavar="USERNAME"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete an account."""
    if not yes and not typer.confirm(f"Delete user {username}?"):
        raise typer.Exit(1)
    client_of(ctx).delete(f"{BASE}/{seg(username, 'USERNAME')}", what=f"remove user {username}")
    info(f"removed user {username}")
