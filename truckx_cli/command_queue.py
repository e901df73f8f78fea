"""``truckx commands list`` and ``truckx commands cancel``: the commands sent to devices, newest first, and
cancelling one that is still queued (it is then never sent)."""

from __future__ import annotations

import enum
from typing import Any, List, Optional

import typer

from .client import client_of, seg
from .commands import FIELDS
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, choose, info, list_paged, parse_when,
                     print_object, short_time)

COLUMNS = [("Created", lambda c: short_time(c.get("created_at"))), ("ID", "id"), ("IMEI", "imei"),
           ("Command", "command"), ("Args", "args"), ("Status", "status"), ("By", "created_by"),
           ("Finished", lambda c: short_time(c.get("finished_at")))]


class Status(str, enum.Enum):
    queued = "queued"
    sent = "sent"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"
    cancelled = "cancelled"


def list_(ctx: typer.Context,
          imei: Optional[List[str]] = typer.Option(None, "--imei", help="Only this device (repeatable)."),
          status: Optional[List[Status]] = typer.Option(None, "--status", help="Only this status (repeatable)."),
          since: Optional[str] = typer.Option(None, "--since", help="Created from this time (RFC 3339 or 2h, 7d)."),
          until: Optional[str] = typer.Option(None, "--until", help="Created before this time."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, follow: bool = ALL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List commands, newest first."""
    fmt = choose(as_json, as_csv)
    params: list[tuple[str, Any]] = [("imei", i) for i in imei or []]
    params += [("status", s.value) for s in status or []]
    params += [("since", parse_when(since, "--since")), ("until", parse_when(until, "--until"))]
    list_paged(client_of(ctx), "/api/v1/admin/commands", params, COLUMNS, limit=limit, cursor=cursor,
               follow=follow, fmt=fmt)


def cancel(ctx: typer.Context, command_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON_OPT) -> None:
    """Cancel a queued command: it is never sent. A command sent already cannot be cancelled (exit 1)."""
    cmd = client_of(ctx).delete(f"/api/v1/admin/commands/{seg(command_id, 'ID')}", what=f"cancel {command_id}")
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd])
    if not as_json:
        info(f"command {cmd.get('id', command_id)} cancelled")


def register(commands_app: typer.Typer) -> None:
    commands_app.command("list")(list_)
    commands_app.command()(cancel)
