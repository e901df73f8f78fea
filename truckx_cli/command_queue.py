"""``truckx commands list`` and ``truckx commands cancel``: the commands sent to devices, newest first, and
cancelling one that is still queued (it is then never sent)."""

from __future__ import annotations

import enum
from typing import Any, List, Optional

import typer

from .client import check_imei, client_of, seg
from .commands import FIELDS
from .common import command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, choose, info, list_paged, parse_window,
                     print_object)

COLUMNS = [Col("Created", "created_at", time=True, priority=0), Col("ID", "id", cut=None, priority=0),
           Col("IMEI", "imei", cut=None, priority=1), Col("Command", "command", priority=1),
           Col("Args", "args", cut=10, priority=3), Col("Status", "status", cut=None, priority=0),
           Col("By", "created_by", priority=2), Col("Finished", "finished_at", time=True, priority=4)]


class Status(str, enum.Enum):
    queued = "queued"
    sent = "sent"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"
    cancelled = "cancelled"


def list_(ctx: typer.Context,
          imei: Optional[List[str]] = typer.Option(None, "--imei", metavar="IMEI",
                                                   help="Only this device (repeatable)."),
          status: Optional[List[Status]] = typer.Option(None, "--status", help="Only this status (repeatable)."),
          since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                              help="Created from this time (RFC 3339 or 2h, 7d)."),
          until: Optional[str] = typer.Option(None, "--until", metavar="TIME", help="Created before this time."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List commands, newest first."""
    fmt = choose(as_json, as_csv)
    start, end = parse_window(since, until)
    params: list[tuple[str, Any]] = [("imei", check_imei(i, "--imei")) for i in imei or []]
    params += [("status", s.value) for s in status or []]
    params += [("since", start), ("until", end)]
    list_paged(client_of(ctx), "/api/v1/admin/commands", params, COLUMNS, limit=limit, cursor=cursor,
               follow=all_, fmt=fmt, view=view_of(ctx))


def cancel(ctx: typer.Context, command_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON_OPT) -> None:
    """Cancel a queued command: it is never sent. A command sent already cannot be cancelled (exit 1)."""
    cmd = client_of(ctx).delete(f"/api/v1/admin/commands/{seg(command_id, 'ID')}", what=f"cancel {command_id}")
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd], view=view_of(ctx))
    if not as_json:
        info(f"command {cmd.get('id', command_id)} cancelled")


def register(commands_app: typer.Typer) -> None:
    command(commands_app, "list", example=["truckx commands list --status queued",
                                           "truckx commands list --imei 356938035643809 --since 1d --all --json"])(
        list_)
    command(commands_app, example="truckx commands cancel 5f0c8a52-7d3e-4b1e-9a51-0d8f1c2b3a4d")(cancel)
