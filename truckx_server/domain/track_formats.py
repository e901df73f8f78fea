"""Track exports: GeoJSON and CSV renderings of a page of a device's track; GPX 1.1 and KML 2.2 of a
whole window, streamed and split into trips (the trip stream comes from ``domain/trips.py``)."""

from __future__ import annotations

import csv
import io
from typing import Any, AsyncIterator, Sequence
from xml.sax.saxutils import escape

from ..models import LocationPoint, format_time, utcnow

FORMATS = ("json", "geojson", "gpx", "kml", "csv")
#: formats rendered from the whole window, streamed (not paged)
STREAMED = ("gpx", "kml")
GEOJSON_KINDS = ("line", "points")
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


def track_geojson(imei: str, points: Sequence[LocationPoint], next_cursor: str | None,
                  kind: str = "line") -> dict[str, Any]:
    """A FeatureCollection of one kind of feature; ``next_cursor`` is a foreign member.

    ``line`` (the default): one LineString through the page's fixes, its properties carrying the
    per-point ``times`` (and ``speeds_kmh``, null where a fix had none); a page of a single fix gives
    that fix as a Point feature (a LineString needs two positions) and an empty page no feature.
    ``points``: one Point feature per fix with its time and readings."""
    def position(p: LocationPoint) -> list[float]:
        return [p.lon, p.lat] if p.alt_m is None else [p.lon, p.lat, p.alt_m]

    def fix(p: LocationPoint) -> dict[str, Any]:
        props = {k: v for k, v in p.to_json().items() if k not in ("lat", "lon")}
        props["kind"] = "fix"
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": position(p)}, "properties": props}

    features: list[dict[str, Any]]
    if kind == "points" or len(points) < 2:
        features = [fix(p) for p in points]
    else:
        features = [{"type": "Feature", "geometry": {"type": "LineString",
                                                     "coordinates": [position(p) for p in points]},
                     "properties": {"imei": imei, "kind": "track", "start": format_time(points[0].ts),
                                    "end": format_time(points[-1].ts),
                                    "times": [format_time(p.ts) for p in points],
                                    "speeds_kmh": [p.speed_kmh for p in points]}}]
    return {"type": "FeatureCollection", "features": features, "next_cursor": next_cursor}


GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
KML_NS = "http://www.opengis.net/kml/2.2"
#: events of ``trips.TripService.track_events``: ("begin", None), ("point", LocationPoint),
#: ("end", trip JSON), ("stop", stop JSON)
TrackEvents = AsyncIterator[tuple[str, Any]]
#: points rendered before a chunk is handed out
CHUNK_POINTS = 500


def _num(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _trkpt(p: LocationPoint) -> str:
    ele = f"<ele>{_num(p.alt_m, 2)}</ele>" if p.alt_m is not None else ""
    ext = []
    if p.speed_kmh is not None:
        ext.append(f"<gpxtpx:speed>{_num(p.speed_kmh / 3.6, 3)}</gpxtpx:speed>")
    if p.heading is not None:
        ext.append(f"<gpxtpx:course>{_num(round(p.heading, 2) % 360.0, 2)}</gpxtpx:course>")
    extensions = (f"<extensions><gpxtpx:TrackPointExtension>{''.join(ext)}</gpxtpx:TrackPointExtension>"
                  "</extensions>") if ext else ""
    return (f'<trkpt lat="{_num(p.lat, 7)}" lon="{_num(p.lon, 7)}">{ele}<time>{format_time(p.ts)}</time>'
            f"{extensions}</trkpt>\n")


async def track_gpx(imei: str, events: TrackEvents) -> AsyncIterator[str]:
    """GPX 1.1, streamed: one track, one ``trkseg`` per trip (so a track is split at stops and gaps),
    each ``trkpt`` with ``ele``, ``time`` and, in Garmin's TrackPointExtension v2, ``speed`` (m/s) and
    ``course`` (degrees), reported or derived. Fixes of stops are in no segment."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           f'<gpx version="1.1" creator="truckx" xmlns="{GPX_NS}" xmlns:gpxtpx="{TPX_NS}" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xsi:schemaLocation="{GPX_NS} http://www.topografix.com/GPX/1/1/gpx.xsd '
           f'{TPX_NS} https://www8.garmin.com/xmlschemas/TrackPointExtensionv2.xsd">\n',
           f"<metadata><name>{escape(imei)}</name><time>{format_time(utcnow())}</time></metadata>\n",
           f"<trk><name>{escape(imei)}</name>\n"]
    async for kind, value in events:
        if kind == "point":
            out.append(_trkpt(value))
        elif kind == "begin":
            out.append("<trkseg>\n")
        elif kind == "end":
            out.append("</trkseg>\n")
        if len(out) >= CHUNK_POINTS:
            yield "".join(out)
            out = []
    out.append("</trk>\n</gpx>\n")
    yield "".join(out)


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


async def track_kml(imei: str, events: TrackEvents) -> AsyncIterator[str]:
    """KML 2.2, streamed trip by trip: one Placemark with a ``LineString`` per trip (its time span and a
    summary in the description), then one Placemark with a ``Point`` per stop. A trip's coordinates are
    held until its end (a Placemark's time span comes before its geometry)."""
    yield ('<?xml version="1.0" encoding="UTF-8"?>\n'
           f'<kml xmlns="{KML_NS}"><Document><name>{escape(imei)}</name>\n'
           '<Style id="trip"><LineStyle><color>ffd18f1e</color><width>4</width></LineStyle></Style>\n'
           '<Style id="stop"><IconStyle><scale>0.8</scale></IconStyle></Style>\n')
    coords: list[str] = []
    trips = 0
    stops: list[str] = []
    async for kind, value in events:
        if kind == "begin":
            coords = []
        elif kind == "point":
            coords.append(f"{_num(value.lon, 7)},{_num(value.lat, 7)}"
                          + (f",{_num(value.alt_m, 2)}" if value.alt_m is not None else ""))
        elif kind == "end":
            trips += 1
            description = (f"{value['distance_km']:.2f} km in {_duration(value['duration_s'])}, "
                           f"max {value['max_speed_kmh']:.0f} km/h, avg {value['avg_speed_kmh']:.0f} km/h")
            yield (f"<Placemark><name>Trip {trips}</name><description>{escape(description)}</description>"
                   f"<TimeSpan><begin>{value['start']}</begin><end>{value['end']}</end></TimeSpan>"
                   "<styleUrl>#trip</styleUrl><LineString><tessellate>1</tessellate><coordinates>"
                   + " ".join(coords) + "</coordinates></LineString></Placemark>\n")
            coords = []
        elif kind == "stop":
            loc = value["location"]
            stops.append(f"<Placemark><name>Stop, {_duration(value['duration_s'])}</name>"
                         f"<TimeSpan><begin>{value['start']}</begin><end>{value['end']}</end></TimeSpan>"
                         f"<styleUrl>#stop</styleUrl><Point><coordinates>{_num(loc['lon'], 7)},"
                         f"{_num(loc['lat'], 7)}</coordinates></Point></Placemark>\n")
            if len(stops) >= CHUNK_POINTS:
                yield "".join(stops)
                stops = []
    yield "".join(stops) + "</Document></kml>\n"


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
