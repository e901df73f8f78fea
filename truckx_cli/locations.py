"""``truckx locations``: latest positions, and a device's track exported as JSON, GeoJSON, GPX or CSV."""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from .client import EXIT_USAGE, CliError, check_imei, client_of, registered, seg
from .common import Group, command, view_of
from .output import CSV_OPT, JSON_OPT, Col, Format, choose, info, parse_window, print_list

app = typer.Typer(help="Latest positions and tracks.", no_args_is_help=True, cls=Group)


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


def _n(key: str, digits: int) -> Any:
    def get(item: dict[str, Any]) -> str:
        value = item.get(key)
        return "" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"
    return get


LATEST_COLUMNS = [Col("IMEI", "imei", cut=None, priority=0), Col("Time", lambda i: _loc(i).get("ts"), time=True,
                                                                 priority=1),
                  Col("Lat", _num("lat", 6), cut=None, priority=2, justify="right"),
                  Col("Lon", _num("lon", 6), cut=None, priority=2, justify="right"),
                  Col("Speed km/h", _num("speed_kmh", 1), cut=None, priority=3, justify="right"),
                  Col("Heading", _num("heading", 0), cut=None, priority=6, justify="right")]
TRACK_COLUMNS = [Col("Time", "ts", time=True, priority=0),
                 Col("Lat", _n("lat", 6), cut=None, priority=1, justify="right"),
                 Col("Lon", _n("lon", 6), cut=None, priority=1, justify="right"),
                 Col("Speed km/h", _n("speed_kmh", 1), cut=None, priority=2, justify="right"),
                 Col("Heading", _n("heading", 0), cut=None, priority=3, justify="right"),
                 Col("Alt m", _n("alt_m", 1), cut=None, priority=6, justify="right"),
                 Col("Accuracy m", _n("accuracy_m", 1), cut=None, priority=7, justify="right")]


@command(app, example=["truckx locations latest", "truckx locations latest --imei 356938035643809 --json"])
def latest(ctx: typer.Context,
           imei: Optional[List[str]] = typer.Option(None, "--imei", metavar="IMEI",
                                                    help="Only this device (repeatable, or comma-separated)."),
           as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """The latest position of every device (or of the ones named)."""
    fmt = choose(as_json, as_csv)
    client = client_of(ctx)
    imeis = list(registered(client, imei))
    items: list[Any] = []
    for page, _next in client.pages("/api/v1/admin/locations/latest", [("imei", i) for i in imeis],
                                    limit=None, cursor=None, follow=True):
        items.extend(page)
    if fmt is not Format.json:
        items = [{**_loc(i)} for i in items]
    print_list(items, LATEST_COLUMNS, fmt, view_of(ctx))


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


@command(app, example=["truckx locations track 356938035643809 --since 2h",
                       "truckx locations track 356938035643809 --since 2026-11-27 --until 2026-11-28 -o day.gpx"])
def track(ctx: typer.Context,
          imei: str = typer.Argument(..., metavar="IMEI", help="The device."),
          since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                              help="From this time: RFC 3339 or relative (2h)."),
          until: Optional[str] = typer.Option(None, "--until", metavar="TIME",
                                              help="Before this time: RFC 3339 or relative."),
          fmt: Optional[TrackFormat] = typer.Option(None, "--format", "-f", help="table, json, geojson, gpx or csv "
                                                    "(default: from the -o extension, else a table)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to this file "
                                                "(.json, .geojson, .gpx or .csv, unless --format says)."),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, max=1000, help="Page size of each request (default 1000).")) -> None:
    """A device's track between two times, oldest first (every page is fetched)."""
    if fmt is None and output is not None:
        fmt = _BY_SUFFIX.get(output.suffix.lower())
        if fmt is None:
            raise CliError(f"cannot tell the format from the extension of {output} ({output.suffix or 'none'}); "
                           f"use {', '.join(_BY_SUFFIX)}, or --format", EXIT_USAGE)
    fmt = fmt or TrackFormat.table
    if fmt is TrackFormat.table and output is not None:
        raise CliError("--format table prints to the terminal; pick json, geojson, gpx or csv with -o", EXIT_USAGE)
    imei = check_imei(imei)
    start, end = parse_window(since, until)
    client = client_of(ctx)
    path = f"/api/v1/admin/devices/{seg(imei, 'IMEI')}/locations"
    params: list[tuple[str, Any]] = [("since", start), ("until", end)]
    if fmt in (TrackFormat.table, TrackFormat.json):
        points: list[Any] = []
        for page, _next in client.pages(path, params, limit=limit or 1000, cursor=None, follow=True):
            points.extend(page)
        if fmt is TrackFormat.table:
            print_list(points, TRACK_COLUMNS, Format.table, view_of(ctx))
            return
        sink = _Sink(output)
        sink.write((json.dumps(points, indent=2) + "\n").encode())
        sink.finish()
        if output:
            info(f"wrote {len(points)} points to {output}")
        return
    # geojson / gpx / csv: the server renders each page (the next page's cursor is in X-Next-Cursor);
    # one page is written as sent, several are merged into one document
    pages: list[bytes] = []
    cursor: str | None = None
    while True:
        query = [(k, v) for k, v in params if v is not None] + [("format", fmt.value), ("limit", limit or 1000)]
        if cursor:
            query.append(("cursor", cursor))
        response = client.request("GET", path, params=query, headers={"Accept": "*/*"})
        pages.append(response.content)
        cursor = response.headers.get("X-Next-Cursor") or None
        if not cursor:
            break
        if len(pages) > 1_000_000:
            raise CliError("the server keeps sending pages; giving up")
    data = pages[0] if len(pages) == 1 else merge_pages(fmt, pages)
    sink = _Sink(output)
    try:
        sink.write(data)
    except BaseException:
        sink.abort()
        raise
    sink.finish()
    if output:
        info(f"wrote {fmt.value} track ({sink.written} bytes) to {output}")


GPX_NS = "http://www.topografix.com/GPX/1/1"


def merge_pages(fmt: TrackFormat, pages: list[bytes]) -> bytes:
    """Several pages of one export as one document."""
    if fmt is TrackFormat.csv:
        out = bytearray(pages[0])
        for page in pages[1:]:
            _header, _sep, rest = page.partition(b"\n")
            if out and not out.endswith(b"\n"):
                out += b"\r\n"
            out += rest
        return bytes(out)
    if fmt is TrackFormat.gpx:
        import xml.etree.ElementTree as ET

        ET.register_namespace("", GPX_NS)
        ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
        root = ET.fromstring(pages[0])
        seg = root.find(f"{{{GPX_NS}}}trk/{{{GPX_NS}}}trkseg")
        if seg is None:
            raise CliError("the server's GPX has no track segment")
        for page in pages[1:]:
            for pt in ET.fromstring(page).iter(f"{{{GPX_NS}}}trkpt"):
                seg.append(pt)
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
    # geojson: the fixes of every page, and one LineString through all of them
    docs = [json.loads(p) for p in pages]
    fixes = [f for d in docs for f in d.get("features", []) if f.get("geometry", {}).get("type") == "Point"]
    features: list[dict[str, Any]] = []
    line = next((f for f in docs[0].get("features", []) if f.get("geometry", {}).get("type") == "LineString"), None)
    if len(fixes) >= 2:
        props = dict(line["properties"]) if line else {}
        times = [f.get("properties", {}).get("ts") for f in fixes]
        if "times" in props:
            props["times"] = times
        if "start" in props:
            props["start"], props["end"] = times[0], times[-1]
        features.append({"type": "Feature", "properties": props,
                         "geometry": {"type": "LineString", "coordinates": [f["geometry"]["coordinates"] for f in fixes]}})
    features.extend(fixes)
    merged = {k: v for k, v in docs[0].items() if k not in ("features", "next_cursor")}
    merged.update({"features": features, "next_cursor": None})
    return json.dumps(merged, separators=(",", ":")).encode()
