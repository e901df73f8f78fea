"""``truckx locations``: latest positions, a device's track exported as JSON, GeoJSON, GPX, KML or CSV, and its
trips and stops."""

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
    kml = "kml"
    csv = "csv"


class GeojsonKind(str, enum.Enum):
    line = "line"
    points = "points"


_BY_SUFFIX = {".json": TrackFormat.json, ".geojson": TrackFormat.geojson, ".gpx": TrackFormat.gpx,
              ".kml": TrackFormat.kml, ".csv": TrackFormat.csv}


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
                       "truckx locations track 356938035643809 --since 2026-11-27 --until 2026-11-28 -o day.gpx",
                       "truckx locations track 356938035643809 --since 1d -o day.kml"])
def track(ctx: typer.Context,
          imei: str = typer.Argument(..., metavar="IMEI", help="The device."),
          since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                              help="From this time: RFC 3339 or relative (2h)."),
          until: Optional[str] = typer.Option(None, "--until", metavar="TIME",
                                              help="Before this time: RFC 3339 or relative."),
          fmt: Optional[TrackFormat] = typer.Option(None, "--format", "-f", help="table, json, geojson, gpx, kml or "
                                                    "csv (default: from the -o extension, else a table)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to this file "
                                                "(.json, .geojson, .gpx, .kml or .csv, unless --format says)."),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, max=1000, help="Page size of each request (default 1000)."),
          geojson_kind: GeojsonKind = typer.Option(GeojsonKind.line, "--geojson-kind",
                                                   help="geojson: the track as one line with per-point times, or "
                                                        "a point per fix.")) -> None:
    """A device's track between two times, oldest first.

    Every page is fetched. GPX has a segment per trip (split at stops and gaps); KML a line per trip and a
    point per stop."""
    if fmt is None and output is not None:
        fmt = _BY_SUFFIX.get(output.suffix.lower())
        if fmt is None:
            raise CliError(f"cannot tell the format from the extension of {output} ({output.suffix or 'none'}); "
                           f"use {', '.join(_BY_SUFFIX)}, or --format", EXIT_USAGE)
    fmt = fmt or TrackFormat.table
    if fmt is TrackFormat.table and output is not None:
        raise CliError("--format table prints to the terminal; pick json, geojson, gpx, kml or csv with -o", EXIT_USAGE)
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
    # geojson / csv: the server renders each page (the next page's cursor is in X-Next-Cursor); one page is
    # written as sent, several are merged into one document. gpx / kml: one response, the whole window
    pages: list[bytes] = []
    cursor: str | None = None
    while True:
        query = [(k, v) for k, v in params if v is not None] + [("format", fmt.value), ("limit", limit or 1000)]
        if fmt is TrackFormat.geojson:
            query.append(("geojson_kind", geojson_kind.value))
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
    # geojson: one kind of feature on every page. Points: all of them; a line: one line through every
    # page's positions (a page of a single fix carries it as a Point)
    docs = [json.loads(p) for p in pages]
    features = [f for d in docs for f in d.get("features", [])]
    merged = {k: v for k, v in docs[0].items() if k not in ("features", "next_cursor")}
    lines = [f for f in features if f.get("geometry", {}).get("type") == "LineString"]
    if lines:
        coords: list[Any] = []
        props: dict[str, Any] = dict(lines[0].get("properties") or {})
        times: list[Any] = []
        speeds: list[Any] = []
        for f in features:
            geometry, fp = f.get("geometry") or {}, f.get("properties") or {}
            if geometry.get("type") == "LineString":
                coords.extend(geometry.get("coordinates") or [])
                times.extend(fp.get("times") or [])
                speeds.extend(fp.get("speeds_kmh") or [])
            elif geometry.get("type") == "Point":
                coords.append(geometry.get("coordinates"))
                times.append(fp.get("ts"))
                speeds.append(fp.get("speed_kmh"))
        props.update({"times": times, "speeds_kmh": speeds, "start": times[0] if times else None,
                      "end": times[-1] if times else None})
        features = [{"type": "Feature", "properties": props, "geometry": {"type": "LineString", "coordinates": coords}}]
    merged.update({"features": features, "next_cursor": None})
    return json.dumps(merged, separators=(",", ":")).encode()


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    minutes = int(value // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


TRIP_COLUMNS = [Col("Start", "start", time=True, priority=0), Col("End", "end", time=True, priority=1),
                Col("Duration", lambda t: _duration(t.get("duration_s")), cut=None, priority=2, justify="right"),
                Col("km", _n("distance_km", 1), cut=None, priority=0, justify="right"),
                Col("Max km/h", _n("max_speed_kmh", 0), cut=None, priority=3, justify="right"),
                Col("Avg km/h", _n("avg_speed_kmh", 0), cut=None, priority=4, justify="right"),
                Col("Alarms", lambda t: len(t.get("alarms") or []), cut=None, priority=3, justify="right")]
STOP_COLUMNS = [Col("Start", "start", time=True, priority=0), Col("End", "end", time=True, priority=1),
                Col("Duration", lambda t: _duration(t.get("duration_s")), cut=None, priority=0, justify="right"),
                Col("Lat", lambda t: f"{t['location']['lat']:.6f}", cut=None, priority=2, justify="right"),
                Col("Lon", lambda t: f"{t['location']['lon']:.6f}", cut=None, priority=2, justify="right")]
SINCE_OPT = typer.Option("1d", "--since", metavar="TIME", help="From this time: RFC 3339 or relative (2h, 7d); "
                                                              "the window may be at most 31 days.")
UNTIL_OPT = typer.Option(None, "--until", metavar="TIME", help="Before this time (default: now).")


def _window_list(ctx: typer.Context, what: str, imei: str, since: str | None, until: str | None) -> list[Any]:
    imei = check_imei(imei)
    start, end = parse_window(since, until)
    return client_of(ctx).get(f"/api/v1/admin/devices/{seg(imei, 'IMEI')}/{what}",
                              params=[(k, v) for k, v in (("since", start), ("until", end)) if v is not None])["items"]


@command(app, example=["truckx locations trips 356938035643809 --since 1d",
                       "truckx locations trips 356938035643809 --since 2026-11-01 --until 2026-11-08 --json"])
def trips(ctx: typer.Context, imei: str = typer.Argument(..., metavar="IMEI", help="The device."),
          since: Optional[str] = SINCE_OPT, until: Optional[str] = UNTIL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """A device's trips, with distance, speeds and alarms.

    A trip runs from the first moving fix to the last one before a stop; its alarms are those raised on the
    way."""
    fmt = choose(as_json, as_csv)
    items = _window_list(ctx, "trips", imei, since, until)
    if fmt is Format.csv:
        items = [{**t, "start_lat": t["start_location"]["lat"], "start_lon": t["start_location"]["lon"],
                  "end_lat": t["end_location"]["lat"], "end_lon": t["end_location"]["lon"]} for t in items]
        fields = ["start", "end", "duration_s", "distance_km", "max_speed_kmh", "avg_speed_kmh", "start_lat",
                  "start_lon", "end_lat", "end_lon", "alarms"]
        print_list(items, TRIP_COLUMNS, fmt, view_of(ctx), csv_fields=fields)
        return
    print_list(items, TRIP_COLUMNS, fmt, view_of(ctx))
    if fmt is Format.table and items:
        total = sum(t.get("distance_km") or 0 for t in items)
        info(f"{len(items)} trips, {total:.1f} km")


@command(app, example=["truckx locations stops 356938035643809 --since 1d",
                       "truckx locations stops 356938035643809 --since 7d --csv > stops.csv"])
def stops(ctx: typer.Context, imei: str = typer.Argument(..., metavar="IMEI", help="The device."),
          since: Optional[str] = SINCE_OPT, until: Optional[str] = UNTIL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """A device's stops: where and how long.

    A stop is at least the server's --stop-min-s (default 5 min) below 5 km/h, or that long without
    reports."""
    fmt = choose(as_json, as_csv)
    items = _window_list(ctx, "stops", imei, since, until)
    if fmt is Format.csv:
        items = [{**t, "lat": t["location"]["lat"], "lon": t["location"]["lon"]} for t in items]
        print_list(items, STOP_COLUMNS, fmt, view_of(ctx), csv_fields=["start", "end", "duration_s", "lat", "lon"])
        return
    print_list(items, STOP_COLUMNS, fmt, view_of(ctx))
