"""``truckx geofences``: fences (add from a GeoJSON file or as a circle, list, remove) and their transitions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, List, Optional

import typer

from .client import EXIT_USAGE, CliError, client_of, seg
from .common import Group, command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, choose, info, list_paged, parse_window,
                     print_object)

app = typer.Typer(help="Manage geofences and see devices enter and leave them.", no_args_is_help=True, cls=Group)

BASE = "/api/v1/admin/geofences"
EVENTS = "/api/v1/admin/geofence-events"
#: the largest GeoJSON file read (the server's JSON body limit is of the same order)
MAX_FILE_BYTES = 4 * 1024 * 1024


def _shape(fence: dict[str, Any]) -> str:
    g = fence.get("geometry") or {}
    if g.get("type") == "Circle":
        lon, lat = g.get("center", [None, None])[:2]
        return f"circle {g.get('radius_m'):g} m at {lat},{lon}"
    if g.get("type") == "Polygon":
        return f"polygon, {sum(len(r) for r in g.get('coordinates', []))} positions"
    if g.get("type") == "MultiPolygon":
        return f"{len(g.get('coordinates', []))} polygons"
    return str(g.get("type"))


def _devices(fence: dict[str, Any]) -> str:
    imeis = fence.get("imeis")
    return "all" if imeis is None else ", ".join(imeis)


COLUMNS = [Col("Id", "id", cut=None, priority=0), Col("Name", "name", priority=0), Col("Shape", _shape, priority=2),
           Col("Devices", _devices, priority=3), Col("Created", "created_at", time=True, priority=4)]
EVENT_COLUMNS = [Col("Time", "ts", time=True, priority=0), Col("IMEI", "imei", cut=None, priority=0),
                 Col("Transition", "transition", cut=None, priority=0),
                 Col("Geofence", "geofence_id", cut=None, priority=2),
                 Col("Lat", "lat", cut=None, priority=3, justify="right"),
                 Col("Lon", "lon", cut=None, priority=3, justify="right")]


def parse_circle(text: str) -> dict[str, Any]:
    """``LAT,LON,RADIUS_M`` as the server's circle geometry (note: GeoJSON order is lon, lat)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        lat, lon, radius = (float(p) for p in parts)
        if len(parts) != 3 or not all(math.isfinite(v) for v in (lat, lon, radius)):
            raise ValueError
    except ValueError:
        raise CliError("--circle must be LAT,LON,RADIUS_M, e.g. 52.52,13.40,500", EXIT_USAGE) from None
    return {"type": "Circle", "center": [lon, lat], "radius_m": radius}


def read_geojson(path: Path) -> dict[str, Any]:
    """A Polygon or MultiPolygon from a GeoJSON file: a geometry, a Feature, or a FeatureCollection of one
    feature."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CliError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", EXIT_USAGE)
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}", EXIT_USAGE) from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise CliError(f"{path}: a FeatureCollection must hold exactly one feature", EXIT_USAGE)
        data = features[0]
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = data.get("geometry")
    if not isinstance(data, dict) or data.get("type") not in ("Polygon", "MultiPolygon"):
        raise CliError(f"{path}: expected a GeoJSON Polygon or MultiPolygon (or a Feature of one)", EXIT_USAGE)
    return data


@command(app, example=["truckx geofences add depot --circle 52.52,13.40,500",
                       "truckx geofences add yard --file yard.geojson --imei 356938035643809"], times=False)
def add(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME"),
        file: Optional[Path] = typer.Option(None, "--file", "-f", metavar="GEOJSON",
                                            help="A GeoJSON Polygon or MultiPolygon (a geometry, or a Feature)."),
        circle: Optional[str] = typer.Option(None, "--circle", metavar="LAT,LON,RADIUS_M",
                                             help="A circle: center latitude, longitude, radius in metres."),
        imei: Optional[List[str]] = typer.Option(None, "--imei", metavar="IMEI",
                                                 help="Only for this device (repeatable; default: every device)."),
        as_json: bool = JSON_OPT) -> None:
    """Create a geofence from a GeoJSON file or a circle (admins only)."""
    if (file is None) == (circle is None):
        raise CliError("give exactly one of --file and --circle", EXIT_USAGE)
    geometry = read_geojson(file) if file is not None else parse_circle(circle or "")
    body: dict[str, Any] = {"name": name, "geometry": geometry}
    if imei:
        body["imeis"] = imei
    fence = client_of(ctx).post(BASE, body, what=f"add geofence {name}")
    if as_json:
        print_object(fence, True)
    else:
        info(f"added geofence {fence['name']} ({_shape(fence)}, devices: {_devices(fence)}): {fence['id']}")


@command(app, "list", example=["truckx geofences list", "truckx geofences list --json"])
def list_(ctx: typer.Context, limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT,
          all_: bool = ALL_OPT, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List geofences, oldest first."""
    list_paged(client_of(ctx), BASE, [], COLUMNS, limit=limit, cursor=cursor, follow=all_,
               fmt=choose(as_json, as_csv), view=view_of(ctx))


@command(app, example="truckx geofences remove 3f2c0a9e-7d4b-4a53-9a51-6c1d2b0e8f10 --yes", times=False)
def remove(ctx: typer.Context, fence_id: str = typer.Argument(..., metavar="ID"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a geofence (admins only); its transitions stay."""
    if not yes and not typer.confirm(f"Delete geofence {fence_id}?"):
        raise typer.Exit(1)
    client_of(ctx).delete(f"{BASE}/{seg(fence_id, 'ID')}", what=f"remove geofence {fence_id}")
    info(f"removed geofence {fence_id}")


@command(app, example=["truckx geofences events --since 1d", "truckx geofences events --imei 356938035643809 --all --csv"])
def events(ctx: typer.Context,
           imei: Optional[List[str]] = typer.Option(None, "--imei", metavar="IMEI", help="Only this device (repeatable)."),
           geofence: Optional[List[str]] = typer.Option(None, "--geofence", metavar="ID",
                                                        help="Only this geofence (repeatable)."),
           since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                               help="From this time (RFC 3339 or 2h, 7d)."),
           until: Optional[str] = typer.Option(None, "--until", metavar="TIME",
                                               help="Before this time (RFC 3339, relative, now)."),
           limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
           as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """Show devices entering and leaving geofences, newest first."""
    start, end = parse_window(since, until)
    params: list[tuple[str, Any]] = [("imei", i) for i in imei or []]
    params += [("geofence_id", g) for g in geofence or []]
    params += [("since", start), ("until", end)]
    list_paged(client_of(ctx), EVENTS, params, EVENT_COLUMNS, limit=limit, cursor=cursor, follow=all_,
               fmt=choose(as_json, as_csv), view=view_of(ctx))
