"""The track CSV cannot carry a spreadsheet formula: text cells starting with = + - @ tab or CR get a
leading ``'`` (OWASP); numbers stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io

from tests.support import RunningServer
from truckx_server.domain.track_formats import track_csv
from truckx_server.models import LocationPoint


def test_text_cells_are_neutralised_numbers_are_not() -> None:
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cells = ['=HYPERLINK("http://evil.example","x")', "+1", "-1+2", "@SUM(1)", "\tx", "\rx"]
    points = [LocationPoint(imei=cell, ts=ts, lat=-33.5, lon=-70.25, speed_kmh=0.0, heading=-0.0)
              for cell in cells]
    rows = list(csv.DictReader(io.StringIO(track_csv(points), newline="")))
    assert [r["imei"] for r in rows] == ["'" + cell for cell in cells]
    for row in rows:
        assert (row["lat"], row["lon"], row["speed_kmh"], row["heading"]) == ("-33.5", "-70.25", "0.0", "-0.0")
        assert row["ts"] == "2026-01-01T00:00:00Z" and row["alt_m"] == ""


async def test_the_served_track_csv_keeps_negative_numbers_as_numbers(server: RunningServer) -> None:
    dev = await server.register()
    ws = await server.connect(dev)
    await ws.send({"type": "location", "seq": 1, "ts": "2026-01-01T00:00:00Z", "lat": -33.5, "lon": -70.25,
                   "alt_m": -12.0})
    await ws.wait_ack(1)
    r = await server.http.get(f"/api/v1/admin/devices/{dev.imei}/locations", params={"format": "csv"},
                              headers=await server.admin_headers())
    assert r.status_code == 200
    (row,) = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert (row["imei"], row["lat"], row["lon"], row["alt_m"]) == (dev.imei, "-33.5", "-70.25", "-12.0")
