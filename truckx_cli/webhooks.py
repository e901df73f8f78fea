"""``truckx webhooks``: endpoints that are sent signed events (Standard Webhooks), and their deliveries
(admins only)."""

from __future__ import annotations

import enum
from typing import List, Optional

import typer

from truckx_server.vocab import WEBHOOK_EVENTS

from .client import EXIT_USAGE, CliError, client_of, seg
from .common import Group, command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, choose, info, list_paged,
                     print_object)

app = typer.Typer(help="Send signed events to your own systems (webhooks).", no_args_is_help=True, cls=Group)

BASE = "/api/v1/admin/webhooks"
FIELDS = ["id", "url", "events", "description", "enabled", "created_at", "updated_at"]
COLUMNS = [Col("ID", "id", cut=None, priority=0), Col("URL", "url", cut=16, priority=0),
           Col("Events", lambda w: ", ".join(w.get("events") or []), cut=12, priority=2),
           Col("Enabled", lambda w: "yes" if w.get("enabled") else "no", cut=None, priority=1),
           Col("Description", "description", cut=8, priority=4),
           Col("Created", "created_at", time=True, priority=3)]
DELIVERY_COLUMNS = [Col("ID", "id", cut=None, priority=0, justify="right"), Col("Type", "type", cut=None, priority=0),
                    Col("Status", "status", cut=None, priority=0),
                    Col("Attempts", "attempts", cut=None, priority=1, justify="right"),
                    Col("Code", "last_status_code", cut=None, priority=2),
                    Col("Last error", "last_error", cut=12, priority=3),
                    Col("Next attempt", "next_attempt_at", time=True, priority=4),
                    Col("Created", "created_at", time=True, priority=1),
                    Col("Message id", "message_id", cut=None, priority=5)]

#: the event types the server knows (truckx_server.vocab), as a choice for Typer
Event = enum.Enum("Event", {name: name for name in WEBHOOK_EVENTS}, type=str)  # type: ignore[misc]


@command(app, example=["truckx webhooks add https://example.com/truckx --event alarm.created --event alarm.cleared",
                       "truckx webhooks add https://example.com/hook --all-events --description 'ops pager'"])
def add(ctx: typer.Context, url: str = typer.Argument(..., metavar="URL", help="http(s) URL the events are "
                                                      "POSTed to."),
        event: Optional[List[Event]] = typer.Option(None, "--event", "-e", metavar="TYPE",
                                                    help="An event type to send (repeatable): "
                                                         + ", ".join(WEBHOOK_EVENTS) + "."),
        all_events: bool = typer.Option(False, "--all-events", help="Send every event type."),
        description: Optional[str] = typer.Option(None, "--description", "-d", help="A note (at most 256 "
                                                  "characters)."),
        as_json: bool = JSON_OPT) -> None:
    """Add an endpoint. Its signing secret is printed this once: store it where the receiver reads it."""
    if bool(event) == all_events:
        raise CliError("give --event TYPE (repeatable) or --all-events", EXIT_USAGE)
    events = list(WEBHOOK_EVENTS) if all_events else list(dict.fromkeys(e.value for e in event or []))
    body: dict = {"url": url, "events": events}
    if description is not None:
        body["description"] = description
    hook = client_of(ctx).post(BASE, body, what="add webhook")
    print_object(hook, as_json, None if as_json else FIELDS + ["secret"], view=view_of(ctx))
    if not as_json:
        info("the secret is shown only now: it signs every delivery (webhook-signature)")


@command(app, "list", example=["truckx webhooks list", "truckx webhooks list --json"])
def list_(ctx: typer.Context, limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT,
          all_: bool = ALL_OPT, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List endpoints, oldest first."""
    list_paged(client_of(ctx), BASE, [], COLUMNS, limit=limit, cursor=cursor, follow=all_,
               fmt=choose(as_json, as_csv), view=view_of(ctx))


@command(app, example="truckx webhooks remove 0b7d8a7e-2c43-4f43-9b4e-8b8f3f7b1e2a --yes", times=False)
def remove(ctx: typer.Context, webhook_id: str = typer.Argument(..., metavar="ID"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete an endpoint and its deliveries."""
    if not yes and not typer.confirm(f"Delete webhook {webhook_id}?"):
        raise typer.Exit(1)
    client_of(ctx).delete(f"{BASE}/{seg(webhook_id, 'ID')}", what=f"webhook {webhook_id}")
    info(f"removed webhook {webhook_id}")


@command(app, example=["truckx webhooks deliveries 0b7d8a7e-2c43-4f43-9b4e-8b8f3f7b1e2a",
                       "truckx webhooks deliveries 0b7d8a7e-2c43-4f43-9b4e-8b8f3f7b1e2a --all --csv"])
def deliveries(ctx: typer.Context, webhook_id: str = typer.Argument(..., metavar="ID"),
               limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
               as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """An endpoint's deliveries, newest first: pending, delivered or failed (given up), with attempts."""
    list_paged(client_of(ctx), f"{BASE}/{seg(webhook_id, 'ID')}/deliveries", [], DELIVERY_COLUMNS, limit=limit,
               cursor=cursor, follow=all_, fmt=choose(as_json, as_csv), view=view_of(ctx))


@command(app, example="truckx webhooks retry 0b7d8a7e-2c43-4f43-9b4e-8b8f3f7b1e2a 42")
def retry(ctx: typer.Context, webhook_id: str = typer.Argument(..., metavar="ID"),
          delivery_id: int = typer.Argument(..., metavar="DELIVERY_ID", min=1),
          as_json: bool = JSON_OPT) -> None:
    """Send a delivery again (same webhook-id), e.g. one that failed after its retries."""
    out = client_of(ctx).post(f"{BASE}/{seg(webhook_id, 'ID')}/deliveries/{delivery_id}/retry",
                              what=f"delivery {delivery_id} of webhook {webhook_id}")
    print_object(out, as_json, view=view_of(ctx))
