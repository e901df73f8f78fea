"""``truckx storage``: what the server's stores hold (counts, sizes, the oldest item of each kind), the
retention settings and what the last retention pass removed."""

from __future__ import annotations

from typing import Any

import typer

from .client import client_of
from .common import command, view_of
from .output import JSON_OPT, Col, Format, human_size, info, print_json, print_list

COLUMNS = [Col("Kind", "kind", cut=None, priority=0),
           Col("Count", "count", cut=None, priority=0, justify="right"),
           Col("Size", "size", cut=None, priority=1, justify="right"),
           Col("Oldest", "oldest", time=True, priority=2),
           Col("Kept", "kept", cut=None, priority=3)]


def _kept(days: Any) -> str:
    return "forever" if not days else f"{days} d"


def storage(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """What the server stores, and the last retention pass.

    Counts are exact, sizes exact for videos and estimated for the databases; the oldest item of each kind
    and how long each is kept."""
    body = client_of(ctx).get("/api/v1/admin/storage")
    if as_json:
        print_json(body)
        return
    view = view_of(ctx)
    kept = body.get("retention") or {}
    videos = body.get("videos") or {}
    rows = [
        {"kind": "locations", **body["locations"], "kept": _kept(kept.get("locations_days"))},
        {"kind": "alarms", **body["alarms"], "kept": _kept(kept.get("alarms_days")) + " (cleared)"},
        {"kind": "videos", **videos, "kept": _kept(kept.get("videos_days"))},
    ]
    for row in rows:
        estimated = row["kind"] != "videos"
        row["size"] = ("~" if estimated else "") + human_size(row.get("bytes"))
    print_list(rows, COLUMNS, Format.table, view)
    incomplete = videos.get("incomplete") or {}
    info(f"videos kept as evidence (an alarm not cleared names them): {videos.get('evidence', 0)}; "
         f"uploads not finished: {incomplete.get('count', 0)} ({human_size(incomplete.get('bytes', 0))})")
    last = body.get("last_pass")
    if last is None:
        info("no retention pass has run yet" + ("" if any(kept.get(k) for k in ("locations_days", "videos_days",
                                                                                  "alarms_days"))
                                                 else " (retention is off: everything is kept)"))
        return
    removed = last.get("removed") or {}
    info(f"last retention pass {view.long(last.get('at'))}: removed {removed.get('locations', 0)} points, "
         f"{removed.get('alarms', 0)} alarms, {removed.get('videos', 0)} videos "
         f"({human_size(removed.get('video_bytes', 0))})" + ("" if last.get("complete", True)
                                                             else "; it ran out of time, the next pass goes on"))


def register(app: typer.Typer) -> None:
    command(app, example=["truckx storage", "truckx storage --json"])(storage)
