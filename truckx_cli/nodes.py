"""``truckx nodes``: the server processes of the deployment (each heartbeats on the cluster bus)."""

from __future__ import annotations

import typer

from .client import client_of
from .common import command, view_of
from .output import CSV_OPT, JSON_OPT, Col, choose, print_list

PATH = "/api/v1/admin/nodes"
COLUMNS = [Col("Node", "node_id", cut=None, priority=0),
           Col("Sessions", "sessions", cut=None, priority=0, justify="right"),
           Col("Started", "started_at", time=True, priority=2),
           Col("Last heartbeat", "last_heartbeat", time=True, priority=1)]


def nodes(ctx: typer.Context, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List the live server processes: node id, device sessions held, start and last heartbeat."""
    fmt = choose(as_json, as_csv)
    body = client_of(ctx).get(PATH, what="list nodes")
    print_list(body.get("items", []) if isinstance(body, dict) else [], COLUMNS, fmt, view=view_of(ctx))


def register(app: typer.Typer) -> None:
    command(app, example=["truckx nodes", "truckx nodes --json"])(nodes)
