"""``truckx audit``: the server's audit log (admins only), newest first."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from .client import client_of
from .output import ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, choose, list_paged, parse_when, short_time

PATH = "/api/v1/admin/audit"
COLUMNS = [("Time", lambda e: short_time(e.get("at"))), ("Actor", "actor"), ("Action", "action"),
           ("Target", "target"), ("Detail", "detail")]


def audit(ctx: typer.Context,
          actor: Optional[List[str]] = typer.Option(None, "--actor", help="Only changes by this user (repeatable)."),
          action: Optional[List[str]] = typer.Option(None, "--action", help="Only this action, e.g. device.disable, "
                                                     "user.role, command.cancel (repeatable)."),
          target: Optional[List[str]] = typer.Option(None, "--target", help="Only changes to this IMEI, user or "
                                                     "id (repeatable)."),
          since: Optional[str] = typer.Option(None, "--since", help="From this time (RFC 3339 or 2h, 7d)."),
          until: Optional[str] = typer.Option(None, "--until", help="Before this time (RFC 3339, relative, now)."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, follow: bool = ALL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """Show who changed what through the admin plane, newest first (admins only)."""
    fmt = choose(as_json, as_csv)
    params: list[tuple[str, Any]] = [("actor", a) for a in actor or []]
    params += [("action", a) for a in action or []]
    params += [("target", t) for t in target or []]
    params += [("since", parse_when(since, "--since")), ("until", parse_when(until, "--until"))]
    list_paged(client_of(ctx), PATH, params, COLUMNS, limit=limit, cursor=cursor, follow=follow, fmt=fmt)


def register(app: typer.Typer) -> None:
    app.command()(audit)
