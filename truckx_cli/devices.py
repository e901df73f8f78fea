"""``truckx devices``: list, add, import a CSV, rename, disable/enable, rotate a secret."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Optional

import typer

from .client import EXIT_USAGE, CliError, client_of, seg
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Format, choose, info, list_paged,
                     print_list, print_object, short_time)

app = typer.Typer(help="Register and manage devices.", no_args_is_help=True)

BASE = "/api/v1/admin/devices"

COLUMNS = [
    ("IMEI", "imei"), ("Name", "name"), ("Enabled", "enabled"), ("Online", "online"),
    ("Last seen", lambda d: short_time(d.get("last_seen"))),
    ("Last location", lambda d: _where(d.get("last_location"))),
]
SECRET_COLUMNS = [("IMEI", "imei"), ("Name", "name"), ("Secret", "secret")]


def _where(loc: Any) -> str:
    if not isinstance(loc, dict) or loc.get("lat") is None:
        return ""
    return f"{loc['lat']:.5f},{loc['lon']:.5f}" + (f" @ {short_time(loc['ts'])}" if loc.get("ts") else "")


@app.command("list")
def list_(ctx: typer.Context, limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT,
          all_: bool = ALL_OPT, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List registered devices with their state and last position."""
    fmt = choose(as_json, as_csv)
    list_paged(client_of(ctx), BASE, [], COLUMNS, limit=limit, cursor=cursor, follow=all_, fmt=fmt)


@app.command()
def add(ctx: typer.Context, imei: str = typer.Argument(..., help="15-digit IMEI (Luhn-checked)."),
        name: Optional[str] = typer.Option(None, "--name", "-n", help="A display name."),
        as_json: bool = JSON_OPT) -> None:
    """Register one device and print its secret (shown only once)."""
    body = client_of(ctx).post(BASE, {"imei": imei, "name": name}, what=f"add {imei}")
    print_object(body, as_json, ["imei", "name", "enabled", "secret"])
    if not as_json:
        info("Keep the secret now: the server stores only its hash and cannot show it again.")


def read_devices_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of ``imei[,name]``; a header row (any first cell that is not digits) is allowed."""
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise CliError(f"{path} has no devices", EXIT_USAGE)
    imei_col, name_col = 0, 1
    first = [c.strip().lower() for c in rows[0]]
    if not first[0].isdigit():
        if "imei" not in first:
            raise CliError(f"{path}: the header row needs an 'imei' column", EXIT_USAGE)
        imei_col = first.index("imei")
        name_col = first.index("name") if "name" in first else -1
        rows = rows[1:]
    devices = []
    for row in rows:
        if imei_col >= len(row):
            raise CliError(f"{path}: a row has no IMEI: {row}", EXIT_USAGE)
        entry: dict[str, Any] = {"imei": row[imei_col].strip()}
        if 0 <= name_col < len(row) and row[name_col].strip():
            entry["name"] = row[name_col].strip()
        devices.append(entry)
    return devices


@app.command("import")
def import_(ctx: typer.Context, file: Path = typer.Argument(..., help="CSV with columns imei[,name]."),
            secrets_out: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write imei,name,secret "
                                                       "as CSV to this file (mode 0600)."),
            as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """Register many devices from a CSV file, all or none, and print their secrets (shown only once)."""
    fmt = choose(as_json, as_csv)
    devices = read_devices_csv(file)
    client = client_of(ctx)
    created: list[dict[str, Any]] = []
    for start in range(0, len(devices), 10_000):
        body = client.post(BASE, {"devices": devices[start:start + 10_000]}, what=f"import {file}")
        created.extend(body.get("devices", []) if isinstance(body, dict) else [])
    if secrets_out is not None:
        fd = os.open(secrets_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["imei", "name", "secret"])
            for d in created:
                writer.writerow([d.get("imei"), d.get("name") or "", d.get("secret")])
        info(f"wrote {len(created)} secrets to {secrets_out} (mode 0600)")
    print_list(created, SECRET_COLUMNS, fmt, csv_fields=["imei", "name", "secret"])
    if fmt is Format.table:
        info(f"registered {len(created)} devices")


@app.command()
def rename(ctx: typer.Context, imei: str, name: str, as_json: bool = JSON_OPT) -> None:
    """Give a device a new name."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"name": name}, what=f"rename {imei}")
    print_object(body or {"imei": imei, "name": name}, as_json)


@app.command()
def disable(ctx: typer.Context, imei: str, as_json: bool = JSON_OPT) -> None:
    """Disable a device: it can no longer log in, and its live connections are closed."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"enabled": False}, what=f"disable {imei}")
    print_object(body or {"imei": imei, "enabled": False}, as_json)


@app.command()
def enable(ctx: typer.Context, imei: str, as_json: bool = JSON_OPT) -> None:
    """Enable a disabled device again."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"enabled": True}, what=f"enable {imei}")
    print_object(body or {"imei": imei, "enabled": True}, as_json)


@app.command("rotate-secret")
def rotate_secret(ctx: typer.Context, imei: str, as_json: bool = JSON_OPT) -> None:
    """Issue a new secret for a device (the old one stops working); printed only once."""
    body = client_of(ctx).post(f"{BASE}/{seg(imei, 'IMEI')}/secret", {}, what=f"rotate-secret {imei}")
    print_object({"imei": imei, **(body or {})}, as_json)
    if not as_json:
        info("Keep the secret now: it cannot be shown again.")
