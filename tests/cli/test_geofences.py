"""truckx geofences add (circle, GeoJSON file or Feature, per device) / list / remove / events, against
the real server, with transitions made by a real device streaming points."""

from __future__ import annotations

import datetime as dt
import json

from tests.cli.support import Env, new_imei
from truckx_server.models import format_time, utcnow

SQUARE = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]]}


def test_add_list_remove(env: Env) -> None:
    circle = env.json("geofences", "add", "depot", "--circle", "52.52,13.40,500")
    assert circle["geometry"] == {"type": "Circle", "center": [13.4, 52.52], "radius_m": 500.0}
    assert circle["imeis"] is None
    path = env.tmp / "yard.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {"name": "yard"}, "geometry": SQUARE}))
    imei = new_imei()
    yard = env.json("geofences", "add", "yard", "--file", str(path), "--imei", imei)
    assert yard["geometry"] == SQUARE and yard["imeis"] == [imei]

    listed = env.json("geofences", "list", "--all")
    assert {f["id"] for f in listed} >= {circle["id"], yard["id"]}
    table = env.ok("geofences", "list").stdout
    assert "depot" in table and "circle 500 m at 52.52,13.4" in table and imei in table

    result = env.ok("geofences", "remove", circle["id"], "--yes")
    assert f"removed geofence {circle['id']}" in result.stderr
    assert circle["id"] not in {f["id"] for f in env.json("geofences", "list", "--all")}
    result = env.run("geofences", "remove", circle["id"], "--yes")
    assert result.exit_code != 0 and "no geofence" in result.stderr
    env.ok("geofences", "remove", yard["id"], "--yes")


def test_usage_errors_are_refused_before_any_call(env: Env) -> None:
    for args in (["add", "x"], ["add", "x", "--circle", "1,2,3", "--file", "f.json"], ["add", "x", "--circle", "1,2"],
                 ["add", "x", "--circle", "a,b,c"], ["add", "x", "--file", str(env.tmp / "missing.json")]):
        result = env.run("geofences", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
    point = env.tmp / "point.geojson"
    point.write_text(json.dumps({"type": "Point", "coordinates": [1, 2]}))
    result = env.run("geofences", "add", "x", "--file", str(point))
    assert result.exit_code == 2 and "Polygon or MultiPolygon" in result.stderr
    # the server's validation reaches the user as one line
    bad = env.tmp / "open.geojson"
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}))
    result = env.run("geofences", "add", "x", "--file", str(bad))
    assert result.exit_code != 0 and "closed" in result.stderr


def test_events_with_filters(env: Env) -> None:
    path = env.tmp / "square.geojson"
    path.write_text(json.dumps(SQUARE))
    fence = env.json("geofences", "add", "square", "--file", str(path))
    dev = env.register("truck")
    t0 = (utcnow() - dt.timedelta(hours=1)).replace(microsecond=0)

    def p(s: int, inside: bool) -> dict:
        return {"ts": format_time(t0 + dt.timedelta(seconds=s)), "lat": 52.05 if inside else 52.5, "lon": 13.05}

    with env.connect(dev) as conn:
        conn.wait_ack(conn.send_points([p(1, False), p(2, True), p(3, False)]))
    node = env.srv.server.node  # type: ignore[union-attr]
    assert env.srv.call(node.flush_locations()) and env.srv.call(node.geofences.evaluator.drain())
    got = env.json("geofences", "events", "--imei", dev.imei, "--geofence", fence["id"], "--all")
    assert [(e["transition"], e["ts"]) for e in got] == [("exit", format_time(t0 + dt.timedelta(seconds=3))),
                                                        ("enter", format_time(t0 + dt.timedelta(seconds=2)))]
    assert env.json("geofences", "events", "--imei", dev.imei, "--since", format_time(t0 + dt.timedelta(seconds=3)),
                    "--until", "now") == [got[0]]
    csv = env.ok("geofences", "events", "--imei", dev.imei, "--csv").stdout.splitlines()
    assert csv[0].split(",") == ["id", "geofence_id", "imei", "transition", "ts", "lat", "lon"] and len(csv) == 3
    table = env.ok("geofences", "events", "--imei", dev.imei).stdout
    assert "enter" in table and "exit" in table and dev.imei in table
