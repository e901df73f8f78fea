"""``truckx nodes``: the server processes of the deployment (each heartbeats on the cluster bus)."""

from __future__ import annotations

import typer

from .client import client_of
from .output import CSV_OPT, JSON_OPT, choose, print_list

PATH = "/api/v1/admin/nodes"
COLUMNS = [("Node", "node_id"), ("Sessions", "sessions"), ("Started", "started_at"),
           ("Last heartbeat", "last_heartbeat")]


def nodes(ctx: typer.Context, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List the live server processes: node id, device sessions held, start and last heartbeat."""
    fmt = choose(as_json, as_csv)
    body = client_of(ctx).get(PATH, what="list nodes")
    print_list(body.get("items", []) if isinstance(body, dict) else [], COLUMNS, fmt)


def register(app: typer.Typer) -> None:
    app.command()(nodes)
