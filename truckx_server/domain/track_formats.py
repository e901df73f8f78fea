"""Track exports: GeoJSON, GPX 1.1 and CSV renderings of a page of a device's track."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence
from xml.sax.saxutils import escape, quoteattr

from ..models import LocationPoint, format_time, utcnow

FORMATS = ("json", "geojson", "gpx", "csv")
CSV_FIELDS = ("imei", "ts", "lat", "lon", "speed_kmh", "heading", "alt_m", "accuracy_m")
#: a text cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading ``'`` (OWASP);
    numbers stay numbers (``-12.5`` is a number, not a formula), None is empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def track_geojson(imei: str, points: Sequence[LocationPoint], next_cursor: str | None) -> dict[str, Any]:
    """A FeatureCollection: one LineString of the whole page (when it has two points or more) and one
    Point per fix carrying its time and readings; ``next_cursor`` is a foreign member."""
    def position(p: LocationPoint) -> list[float]:
        return [p.lon, p.lat] if p.alt_m is None else [p.lon, p.lat, p.alt_m]

    features: list[dict[str, Any]] = []
    if len(points) >= 2:
        features.append({"type": "Feature", "geometry": {"type": "LineString",
                                                          "coordinates": [position(p) for p in points]},
                         "properties": {"imei": imei, "kind": "track", "start": format_time(points[0].ts),
                                        "end": format_time(points[-1].ts),
                                        "times": [format_time(p.ts) for p in points]}})
    for p in points:
        props = {k: v for k, v in p.to_json().items() if k not in ("lat", "lon")}
        props["kind"] = "fix"
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": position(p)},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features, "next_cursor": next_cursor}


def track_gpx(imei: str, points: Sequence[LocationPoint]) -> str:
    """GPX 1.1: one track, one segment, a ``trkpt`` per fix with ``ele`` and ``time``."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<gpx version="1.1" creator="truckx" xmlns="http://www.topografix.com/GPX/1/1" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">',
           f"<metadata><name>{escape(imei)}</name><time>{format_time(utcnow())}</time></metadata>",
           f"<trk><name>{escape(imei)}</name><trkseg>"]
    for p in points:
        ele = f"<ele>{p.alt_m!r}</ele>" if p.alt_m is not None else ""
        out.append(f"<trkpt lat={quoteattr(repr(p.lat))} lon={quoteattr(repr(p.lon))}>{ele}"
                   f"<time>{format_time(p.ts)}</time></trkpt>")
    out.append("</trkseg></trk></gpx>")
    return "\n".join(out) + "\n"


def track_csv(points: Sequence[LocationPoint]) -> str:
    """RFC 4180 CSV; every text cell is neutralised against formula injection (today's columns are
    numbers, a validated IMEI and a time, so this guards the columns to come)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for p in points:
        row = p.to_json()
        writer.writerow([csv_cell(row.get(k)) for k in CSV_FIELDS])
    return buf.getvalue()
