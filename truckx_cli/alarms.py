"""``truckx alarms``: search with filters, show one, acknowledge, clear."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from .client import EXIT_USAGE, CliError, client_of, seg
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, cell, choose, list_paged, parse_when, short_time,
                     print_json, print_object, stdout)

app = typer.Typer(help="Search and handle alarms.", no_args_is_help=True)

BASE = "/api/v1/admin/alarms"
TYPES = ("VIBRATION", "OVERSPEED", "CRASH", "HARD_ACCELERATION", "HARD_BRAKE", "SHARP_TURN")
STATUSES = ("active", "acknowledged", "cleared")


def _file_name(f: Any) -> str:
    return f.get("name", "?") if isinstance(f, dict) else str(f)


def file_arrived(f: Any) -> bool:
    if not isinstance(f, dict):
        return False
    for key in ("arrived", "complete", "uploaded", "has_video", "video"):
        if key in f:
            return bool(f[key])
    return False


def _files(alarm: dict[str, Any]) -> str:
    files = alarm.get("files") or []
    if not files:
        return ""
    arrived = sum(1 for f in files if file_arrived(f))
    return f"{arrived}/{len(files)}"


COLUMNS = [
    ("ID", "id"), ("Time", lambda a: short_time(a.get("ts"))), ("IMEI", "imei"), ("Type", "type"), ("Status", "status"),
    ("Position", lambda a: f"{a['lat']:.4f},{a['lon']:.4f}" if a.get("lat") is not None else ""),
    ("Videos", _files),
]


def parse_bbox(text: str | None) -> str | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError:
        raise CliError("--bbox must be minLon,minLat,maxLon,maxLat (four numbers)", EXIT_USAGE) from None
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise CliError("--bbox: longitudes must be within -180..180 and minLat <= maxLat within -90..90", EXIT_USAGE)
    return ",".join(p.strip() for p in parts)


@app.command("list")
def list_(
    ctx: typer.Context,
    imei: Optional[List[str]] = typer.Option(None, "--imei", help="Only this device (repeatable)."),
    type_: Optional[List[str]] = typer.Option(None, "--type", help="Only this type (repeatable): "
                                              + ", ".join(TYPES) + "."),
    status: Optional[str] = typer.Option(None, "--status", help="active, acknowledged or cleared."),
    since: Optional[str] = typer.Option(None, "--since", help="From this time: RFC 3339 or relative (2h, 7d)."),
    until: Optional[str] = typer.Option(None, "--until", help="Before this time: RFC 3339 or relative."),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="minLon,minLat,maxLon,maxLat"),
    has_video: Optional[bool] = typer.Option(None, "--has-video/--no-video",
                                             help="Only alarms whose video has (or has not) arrived."),
    limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
    as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT,
) -> None:
    """List alarms, newest first, matching every filter given."""
    fmt = choose(as_json, as_csv)
    types = [t.upper() for t in type_ or []]
    for t in types:
        if t not in TYPES:
            raise CliError(f"--type must be one of {', '.join(TYPES)}, not {t!r}", EXIT_USAGE)
    if status is not None and status.lower() not in STATUSES:
        raise CliError(f"--status must be one of {', '.join(STATUSES)}, not {status!r}", EXIT_USAGE)
    params: list[tuple[str, Any]] = [("imei", i) for i in imei or []] + [("type", t) for t in types]
    params += [("status", status.lower() if status else None), ("since", parse_when(since, "--since")),
               ("until", parse_when(until, "--until")), ("bbox", parse_bbox(bbox)),
               ("has_video", None if has_video is None else ("true" if has_video else "false"))]
    list_paged(client_of(ctx), BASE, params, COLUMNS, limit=limit, cursor=cursor, follow=all_, fmt=fmt)


def _show(alarm: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(alarm)
        return
    print_object(alarm, False, [k for k in alarm if k != "files"])
    files = alarm.get("files") or []
    if files:
        console = stdout()
        console.print("files:")
        for f in files:
            console.print(f"  {_file_name(f)}  {'video arrived' if file_arrived(f) else 'video pending'}"
                          + (f"  {cell(f.get('size'))} bytes" if isinstance(f, dict) and f.get("size") else ""))


@app.command()
def show(ctx: typer.Context, alarm_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON_OPT) -> None:
    """Show one alarm with its files."""
    _show(client_of(ctx).get(f"{BASE}/{seg(alarm_id, 'ID')}", what=f"alarm {alarm_id}"), as_json)


@app.command()
def ack(ctx: typer.Context, alarm_id: str = typer.Argument(..., metavar="ID"),
        note: Optional[str] = typer.Option(None, "--note", help="A note stored with the acknowledgement."),
        as_json: bool = JSON_OPT) -> None:
    """Acknowledge an alarm (active -> acknowledged)."""
    client = client_of(ctx)
    body = client.post(f"{BASE}/{seg(alarm_id, 'ID')}/ack", {"note": note} if note else {}, what=f"ack {alarm_id}")
    _show(_alarm_of(client, alarm_id, body), as_json)


@app.command()
def clear(ctx: typer.Context, alarm_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON_OPT) -> None:
    """Clear an alarm (-> cleared)."""
    client = client_of(ctx)
    body = client.post(f"{BASE}/{seg(alarm_id, 'ID')}/clear", {}, what=f"clear {alarm_id}")
    _show(_alarm_of(client, alarm_id, body), as_json)


def _alarm_of(client: Any, alarm_id: str, body: Any) -> dict[str, Any]:
    """The alarm after a change: the response when it is the alarm, else fetched."""
    if isinstance(body, dict) and body.get("id") == alarm_id and "status" in body:
        return body
    if isinstance(body, dict) and isinstance(body.get("alarm"), dict):
        return body["alarm"]
    return client.get(f"{BASE}/{seg(alarm_id, 'ID')}", what=f"alarm {alarm_id}")
