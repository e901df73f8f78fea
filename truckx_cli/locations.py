"""``truckx locations``: latest positions, and a device's track exported as JSON, GeoJSON, GPX or CSV."""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from .client import EXIT_USAGE, CliError, client_of
from .output import CSV_OPT, JSON_OPT, Format, choose, info, parse_when, print_list

app = typer.Typer(help="Latest positions and tracks.", no_args_is_help=True)


def _loc(item: dict[str, Any]) -> dict[str, Any]:
    for key in ("location", "last_location"):
        if isinstance(item.get(key), dict):
            return {"imei": item.get("imei"), **item[key]}
    return item


def _num(key: str, digits: int) -> Any:
    def get(item: dict[str, Any]) -> str:
        value = _loc(item).get(key)
        return "" if value is None else f"{value:.{digits}f}"
    return get


LATEST_COLUMNS = [("IMEI", "imei"), ("Time", lambda i: _loc(i).get("ts")), ("Lat", _num("lat", 6)),
                  ("Lon", _num("lon", 6)), ("Speed km/h", _num("speed_kmh", 1)), ("Heading", _num("heading", 0))]
TRACK_COLUMNS = [("Time", "ts"), ("Lat", "lat"), ("Lon", "lon"), ("Speed km/h", "speed_kmh"),
                 ("Heading", "heading"), ("Alt m", "alt_m"), ("Accuracy m", "accuracy_m")]


@app.command()
def latest(ctx: typer.Context,
           imei: Optional[List[str]] = typer.Option(None, "--imei", help="Only this device (repeatable)."),
           as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """The latest position of every device (or of the ones named)."""
    fmt = choose(as_json, as_csv)
    client = client_of(ctx)
    items: list[Any] = []
    for page, _next in client.pages("/api/v1/admin/locations/latest", [("imei", i) for i in imei or []],
                                    limit=None, cursor=None, follow=True):
        items.extend(page)
    if fmt is not Format.json:
        items = [{**_loc(i)} for i in items]
    print_list(items, LATEST_COLUMNS if fmt is Format.table else
               [("imei", "imei"), ("ts", "ts"), ("lat", "lat"), ("lon", "lon"), ("speed_kmh", "speed_kmh"),
                ("heading", "heading")], fmt)


class TrackFormat(str, enum.Enum):
    table = "table"
    json = "json"
    geojson = "geojson"
    gpx = "gpx"
    csv = "csv"


_BY_SUFFIX = {".json": TrackFormat.json, ".geojson": TrackFormat.geojson, ".gpx": TrackFormat.gpx,
              ".csv": TrackFormat.csv}


class _Sink:
    """stdout, or a file written under a temporary name and moved into place when complete."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp") if path else None
        self.fh: Any = open(self.tmp, "wb") if self.tmp else sys.stdout.buffer  # noqa: SIM115
        self.written = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.written += len(data)

    def finish(self) -> None:
        self.fh.flush()
        if self.tmp and self.path:
            self.fh.close()
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.tmp:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)


@app.command()
def track(ctx: typer.Context,
          imei: str = typer.Argument(..., help="The device."),
          since: Optional[str] = typer.Option(None, "--since", help="From this time: RFC 3339 or relative (2h)."),
          until: Optional[str] = typer.Option(None, "--until", help="Before this time: RFC 3339 or relative."),
          fmt: Optional[TrackFormat] = typer.Option(None, "--format", "-f", help="table, json, geojson, gpx or csv "
                                                    "(default: from the -o suffix, else a table)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file."),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, max=1000, help="Page size for json/table.")) -> None:
    """A device's track between two times, oldest first (every page is fetched)."""
    if fmt is None:
        fmt = _BY_SUFFIX.get(output.suffix.lower(), TrackFormat.json) if output else TrackFormat.table
    if fmt is TrackFormat.table and output is not None:
        raise CliError("--format table prints to the terminal; pick json, geojson, gpx or csv with -o", EXIT_USAGE)
    client = client_of(ctx)
    path = f"/api/v1/admin/devices/{imei}/locations"
    params: list[tuple[str, Any]] = [("since", parse_when(since, "--since")), ("until", parse_when(until, "--until"))]
    if fmt in (TrackFormat.table, TrackFormat.json):
        points: list[Any] = []
        for page, _next in client.pages(path, params, limit=limit, cursor=None, follow=True):
            points.extend(page)
        if fmt is TrackFormat.table:
            print_list(points, TRACK_COLUMNS, Format.table)
            return
        sink = _Sink(output)
        sink.write((json.dumps(points, indent=2) + "\n").encode())
        sink.finish()
        if output:
            info(f"wrote {len(points)} points to {output}")
        return
    # geojson / gpx / csv: the server renders the document; stream it through
    query = [(k, v) for k, v in params if v is not None] + [("format", fmt.value)]
    sink = _Sink(output)
    try:
        with client.stream("GET", path, params=query) as response:
            for chunk in response.iter_bytes():
                sink.write(chunk)
    except BaseException:
        sink.abort()
        raise
    sink.finish()
    if output:
        info(f"wrote {fmt.value} track ({sink.written} bytes) to {output}")
