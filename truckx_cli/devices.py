"""``truckx devices``: list (with filters), show, add, import a CSV, rename, disable/enable, rotate a secret."""

from __future__ import annotations

import csv
import fnmatch
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from .client import EXIT_ERROR, EXIT_USAGE, CliError, check_imei, client_of, imei_problem, seg
from .common import Group, command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, Format, TimeView, choose, info,
                     list_paged, print_list, print_object)

app = typer.Typer(help="Register and manage devices.", no_args_is_help=True, cls=Group)

BASE = "/api/v1/admin/devices"
IMEI_ARG = typer.Argument(..., metavar="IMEI", help="15-digit IMEI (Luhn-checked).")
#: devices registered per request (the server's limit)
IMPORT_BATCH = 10_000
#: problems named before the rest are counted
MAX_REPORTED = 20
MAX_NAME = 128


def _where(loc: Any) -> str:
    if not isinstance(loc, dict) or loc.get("lat") is None:
        return ""
    return f"{loc['lat']:.5f},{loc['lon']:.5f}"


COLUMNS = [
    Col("IMEI", "imei", cut=None, priority=0), Col("Name", "name", cut=8, priority=1),
    Col("Online", "online", cut=None, priority=2), Col("Last seen", "last_seen", time=True, priority=3),
    Col("Enabled", "enabled", cut=None, priority=4), Col("Last location", lambda d: _where(d.get("last_location")),
                                                         cut=None, priority=6),
]
SECRET_COLUMNS = [Col("IMEI", "imei", cut=None, priority=0), Col("Name", "name", cut=6, priority=2),
                  Col("Secret", "secret", cut=None, priority=1)]


def name_matches(pattern: str, name: Any) -> bool:
    """``--name``: a glob (``*``, ``?``, ``[...]``) matched against the whole name, or else a substring;
    case-insensitive either way."""
    if not isinstance(name, str):
        return False
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())
    return pattern.casefold() in name.casefold()


@command(app, "list", example=["truckx devices list --online", "truckx devices list --offline --name 'truck-*'",
                               "truckx devices list --all --csv > devices.csv"])
def list_(ctx: typer.Context,
          online: Optional[bool] = typer.Option(None, "--online/--offline", help="Only devices connected now "
                                                "(or only those that are not)."),
          name: Optional[str] = typer.Option(None, "--name", metavar="PATTERN", help="Only devices whose name "
                                             "matches: a glob like 'truck-*' or a part of the name "
                                             "(case-insensitive)."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT,
          all_: bool = ALL_OPT, as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List registered devices with their state and last position."""
    fmt = choose(as_json, as_csv)
    client = client_of(ctx)
    if online is None and not name:
        list_paged(client, BASE, [], COLUMNS, limit=limit, cursor=cursor, follow=all_, fmt=fmt, view=view_of(ctx))
        return
    # the filters are applied here (the server lists every device): walk every page, keep the matches
    items: list[dict[str, Any]] = []
    for page, _next in client.pages(BASE, [], limit=1000, cursor=cursor, follow=True):
        items.extend(d for d in page if (online is None or bool(d.get("online")) == online)
                     and (not name or name_matches(name, d.get("name"))))
    shown = items if all_ or limit is None else items[:limit]
    print_list(shown, COLUMNS, fmt, view_of(ctx))
    if len(shown) < len(items):
        info(f"{len(items)} devices match; showing {len(shown)} (--all for every one)")


def show_device(device: dict[str, Any], as_json: bool, view: TimeView) -> None:
    if as_json:
        print_object(device, True)
        return
    flat = {k: v for k, v in device.items() if k != "last_location"}
    loc = device.get("last_location")
    if isinstance(loc, dict):
        flat["last_location"] = _where(loc) + (f" ({loc['speed_kmh']:g} km/h)"
                                               if isinstance(loc.get("speed_kmh"), (int, float)) else "")
        flat["last_location_at"] = loc.get("ts")
    print_object(flat, False, view=view)


@command(app, example="truckx devices show 356938035643809")
def show(ctx: typer.Context, imei: str = IMEI_ARG, as_json: bool = JSON_OPT) -> None:
    """Show one device: name, state, when it was last seen and where."""
    imei = check_imei(imei)
    device = client_of(ctx).get(f"{BASE}/{seg(imei, 'IMEI')}", what=f"device {imei}")
    show_device(device, as_json, view_of(ctx))


@command(app, example="truckx devices add 356938035643809 --name 'truck 12'", times=False)
def add(ctx: typer.Context, imei: str = IMEI_ARG,
        name: Optional[str] = typer.Option(None, "--name", "-n", help="A display name."),
        as_json: bool = JSON_OPT) -> None:
    """Register one device and print its secret (shown only once)."""
    body = client_of(ctx).post(BASE, {"imei": imei, "name": name}, what=f"add {imei}")
    print_object(body, as_json, ["imei", "name", "enabled", "secret"])
    if not as_json:
        info("Keep the secret now: the server stores only its hash and cannot show it again.")


@dataclass
class Row:
    line: int
    imei: str
    name: str | None


def read_devices_csv(path: Path) -> list[Row]:
    """Rows of ``imei[,name]`` (a header row naming the columns is allowed), each checked here so that a
    problem is reported with its line number; every problem found is a usage error (nothing registered)."""
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start})", EXIT_USAGE) from None
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CliError(f"{path} line {reader.line_num}: {exc}", EXIT_USAGE) from None
    if not rows:
        raise CliError(f"{path} has no devices", EXIT_USAGE)
    imei_col, name_col = 0, 1
    first = [c.strip().lower() for c in rows[0][1]]
    if not first[0].isdigit():
        if "imei" not in first:
            raise CliError(f"{path} line {rows[0][0]}: the header row needs an 'imei' column "
                           f"(or start with the first device)", EXIT_USAGE)
        imei_col = first.index("imei")
        name_col = first.index("name") if "name" in first else -1
        rows = rows[1:]
    devices: list[Row] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        imei = row[imei_col].strip() if imei_col < len(row) else ""
        name = row[name_col].strip() if 0 <= name_col < len(row) and row[name_col].strip() else None
        problem = imei_problem(imei)
        if problem is None and imei in seen:
            problem = f"IMEI {imei} is also on line {seen[imei]}"
        if problem is None and name is not None and len(name) > MAX_NAME:
            problem = f"the name is {len(name)} characters long (at most {MAX_NAME})"
        if problem:
            problems.append(f"{path} line {line}: {problem}")
            continue
        seen[imei] = line
        devices.append(Row(line, imei, name))
    if problems:
        listed = problems[:MAX_REPORTED]
        more = len(problems) - len(listed)
        raise CliError(f"{path}: {len(problems)} row{'s' if len(problems) > 1 else ''} cannot be imported; "
                       "nothing was registered:\n  " + "\n  ".join(listed)
                       + (f"\n  ... and {more} more" if more else ""), EXIT_USAGE)
    return devices


@command(app, "import", example=["truckx devices import fleet.csv -o fleet-secrets.csv",
                                 "printf 'imei,name\\n356938035643809,truck 12\\n' | truckx devices import /dev/stdin"],
         times=False)
def import_(ctx: typer.Context, file: Path = typer.Argument(..., metavar="FILE", help="CSV with columns imei[,name] "
                                                           "(a header row is optional)."),
            secrets_out: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Also write "
                                                       "imei,name,secret as CSV to this file (mode 0600)."),
            as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """Register many devices from a CSV file and print their secrets (shown only once). Every row is
    checked first; a problem names its line and nothing is registered."""
    fmt = choose(as_json, as_csv)
    rows = read_devices_csv(file)
    client = client_of(ctx)
    created: list[dict[str, Any]] = []
    for start in range(0, len(rows), IMPORT_BATCH):
        batch = rows[start:start + IMPORT_BATCH]
        try:
            body = client.post(BASE, {"devices": [{"imei": r.imei, **({"name": r.name} if r.name else {})}
                                                  for r in batch]}, what=f"import {file}")
        except CliError as exc:
            raise _name_rows(exc, batch, file, done=len(created)) from None
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


def _name_rows(exc: CliError, batch: list[Row], file: Path, done: int) -> CliError:
    """The server's refusal of a batch, with the lines of the rows it names (IMEIs already registered)."""
    taken = [r for r in batch if r.imei in set(exc.detail.get("imeis") or [])] if exc.detail else []
    lines = [f"{file} line {r.line}: IMEI {r.imei} is already registered" for r in taken[:MAX_REPORTED]]
    if len(taken) > MAX_REPORTED:
        lines.append(f"... and {len(taken) - MAX_REPORTED} more")
    kept = (f"; the {done} devices of the earlier rows were registered" if done else
            "; nothing was registered")
    if lines:
        return CliError(f"conflict: {len(taken)} device{'s' if len(taken) > 1 else ''} already registered{kept}:\n  "
                        + "\n  ".join(lines), EXIT_ERROR)
    return CliError(exc.message + kept, exc.code)


@command(app, example="truckx devices rename 356938035643809 'truck 12'", times=False)
def rename(ctx: typer.Context, imei: str = IMEI_ARG, name: str = typer.Argument(..., metavar="NAME"),
           as_json: bool = JSON_OPT) -> None:
    """Give a device a new name."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"name": name}, what=f"rename {imei}")
    print_object(body or {"imei": imei, "name": name}, as_json)


@command(app, example="truckx devices disable 356938035643809", times=False)
def disable(ctx: typer.Context, imei: str = IMEI_ARG, as_json: bool = JSON_OPT) -> None:
    """Disable a device: it can no longer log in, and its live connections are closed."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"enabled": False}, what=f"disable {imei}")
    print_object(body or {"imei": imei, "enabled": False}, as_json)


@command(app, example="truckx devices enable 356938035643809", times=False)
def enable(ctx: typer.Context, imei: str = IMEI_ARG, as_json: bool = JSON_OPT) -> None:
    """Enable a disabled device again."""
    body = client_of(ctx).patch(f"{BASE}/{seg(imei, 'IMEI')}", {"enabled": True}, what=f"enable {imei}")
    print_object(body or {"imei": imei, "enabled": True}, as_json)


@command(app, "rotate-secret", example="truckx devices rotate-secret 356938035643809", times=False)
def rotate_secret(ctx: typer.Context, imei: str = IMEI_ARG, as_json: bool = JSON_OPT) -> None:
    """Issue a new secret for a device (the old one stops working); printed only once."""
    body = client_of(ctx).post(f"{BASE}/{seg(imei, 'IMEI')}/secret", {}, what=f"rotate-secret {imei}")
    print_object({"imei": imei, **(body or {})}, as_json)
    if not as_json:
        info("Keep the secret now: it cannot be shown again.")
