"""``truckx audit``: the server's audit log (admins only), newest first."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from .client import client_of
from .common import command, view_of
from .output import ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, choose, list_paged, parse_window

PATH = "/api/v1/admin/audit"
COLUMNS = [Col("Time", "at", time=True, priority=0), Col("Actor", "actor", priority=1),
           Col("Action", "action", cut=None, priority=0), Col("Target", "target", cut=None, priority=1),
           Col("Detail", "detail", cut=12, priority=3)]


def audit(ctx: typer.Context,
          actor: Optional[List[str]] = typer.Option(None, "--actor", metavar="USER",
                                                    help="Only changes by this user (repeatable)."),
          action: Optional[List[str]] = typer.Option(None, "--action", metavar="ACTION", help="Only this action, "
                                                     "e.g. device.disable, user.role, command.cancel (repeatable)."),
          target: Optional[List[str]] = typer.Option(None, "--target", metavar="TARGET",
                                                     help="Only changes to this IMEI, user or id (repeatable)."),
          since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                              help="From this time (RFC 3339 or 2h, 7d)."),
          until: Optional[str] = typer.Option(None, "--until", metavar="TIME",
                                              help="Before this time (RFC 3339, relative, now)."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """Show who changed what through the admin plane, newest first (admins only)."""
    fmt = choose(as_json, as_csv)
    start, end = parse_window(since, until)
    params: list[tuple[str, Any]] = [("actor", a) for a in actor or []]
    params += [("action", a) for a in action or []]
    params += [("target", t) for t in target or []]
    params += [("since", start), ("until", end)]
    list_paged(client_of(ctx), PATH, params, COLUMNS, limit=limit, cursor=cursor, follow=all_, fmt=fmt,
               view=view_of(ctx))


def register(app: typer.Typer) -> None:
    command(app, example=["truckx audit --since 1d", "truckx audit --action device.disable --actor ada --all --csv"])(
        audit)
