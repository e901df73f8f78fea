"""Rendering (tables by default, ``--json`` / ``--csv`` for scripts) and parsing of times given on the
command line (RFC 3339 or relative: ``30m``, ``2h``, ``7d``)."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import json
import re
import sys
from typing import Any, Callable, Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table

from .client import EXIT_USAGE, CliError

UTC = dt.timezone.utc

Column = tuple[str, str | Callable[[dict[str, Any]], Any]]  # (header, key or getter)

JSON_OPT = typer.Option(False, "--json", help="Print JSON (machine-readable; nothing else goes to stdout).")
CSV_OPT = typer.Option(False, "--csv", help="Print CSV with a header row.")


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"


def choose(as_json: bool, as_csv: bool) -> Format:
    if as_json and as_csv:
        raise CliError("give at most one of --json and --csv", EXIT_USAGE)
    return Format.json if as_json else Format.csv if as_csv else Format.table


def stdout() -> Console:
    # created per call: the CLI's streams may be swapped (tests) and the width is the terminal's
    return Console(file=sys.stdout, soft_wrap=False, highlight=False)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


def info(message: str) -> None:
    """A human note on stderr (never mixed into machine output on stdout)."""
    typer.echo(message, err=True)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _get(item: dict[str, Any], key: str | Callable[[dict[str, Any]], Any]) -> Any:
    if callable(key):
        return key(item)
    value: Any = item
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


#: table columns kept whole while the terminal allows (the others fold first)
MIN_WIDTH = {"IMEI": 15, "Time": 20, "Last seen": 20, "Status": 6}


#: a text cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell: booleans as true/false, nested values as JSON, and text that a spreadsheet would run
    as a formula (starting with = + - @ tab or CR, like a device named ``=HYPERLINK(...)``) with a
    leading ``'``. Numbers stay numbers: ``-12.5`` is written as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return cell(value)


def print_list(items: Sequence[dict[str, Any]], columns: Sequence[Column], fmt: Format,
               title: str | None = None, csv_fields: Sequence[str] | None = None) -> None:
    """A list as a table (the columns), a JSON array of the full items, or CSV of every field of the items
    (or of ``csv_fields``), nested values as JSON."""
    if fmt is Format.json:
        print_json(list(items))
        return
    if fmt is Format.csv:
        if csv_fields is None:
            fields = list(dict.fromkeys(k for item in items for k in item))
            if not fields:
                fields = [key for _h, key in columns if isinstance(key, str)]
        else:
            fields = list(csv_fields)
        # CRLF as RFC 4180 says: the csv module then also quotes a cell holding a lone CR (with "\n" it
        # would not, and a reader would split the row there)
        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        writer.writerow(fields)
        for item in items:
            writer.writerow([csv_cell(item.get(f)) for f in fields])
        sys.stdout.flush()
        return
    if not items:
        info("(nothing)")
        return
    console = stdout()
    wide = console.width >= 110
    table = Table(title=title, show_lines=False, header_style="bold")
    for header, _key in columns:
        table.add_column(header, overflow="fold", min_width=MIN_WIDTH.get(header) if wide else None)
    for item in items:
        table.add_row(*(cell(_get(item, key)) for _h, key in columns))
    console.print(table)


def print_object(obj: dict[str, Any], as_json: bool, fields: Iterable[str] | None = None) -> None:
    """One record as JSON or as a two-column table of its fields."""
    if as_json:
        print_json(obj)
        return
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in fields or obj.keys():
        table.add_row(key, cell(obj.get(key)))
    stdout().print(table)


# -- times -------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days|w|wk)\s*(?:ago)?\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400,
          "days": 86400, "w": 604800, "wk": 604800}


def format_time(value: dt.datetime) -> str:
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_when(text: str | None, option: str = "time", now: dt.datetime | None = None) -> str | None:
    """``2h`` / ``30m`` / ``7d`` (ago), ``now``, an RFC 3339 time, or a date, as RFC 3339 UTC."""
    if text is None or text == "":
        return None
    now = now or dt.datetime.now(UTC)
    if text.strip().lower() == "now":
        return format_time(now)
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return format_time(now - dt.timedelta(seconds=seconds))
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise CliError(f"{option}: cannot read {text!r} as a time; use RFC 3339 (2026-11-27T21:55:00Z) "
                       "or a relative time like 30m, 2h, 7d", EXIT_USAGE) from None
    if parsed.tzinfo is None:
        if "T" in raw.upper() or " " in raw:
            raise CliError(f"{option}: {text!r} has no time zone; add Z or +hh:mm", EXIT_USAGE)
        parsed = parsed.replace(tzinfo=UTC)  # a bare date: midnight UTC
    return format_time(parsed)


def short_time(value: Any) -> str:
    """An RFC 3339 time for a table: whole seconds (the full value is in --json / --csv)."""
    if not isinstance(value, str):
        return cell(value)
    return re.sub(r"\.\d+(?=Z|[+-]\d\d:\d\d$)", "", value)


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


# -- paged lists -------------------------------------------------------------------------------

LIMIT_OPT = typer.Option(None, "--limit", min=1, max=1000, help="Page size (server default 100, max 1000).")
CURSOR_OPT = typer.Option(None, "--cursor", help="Start at this page cursor (from a previous listing).")
ALL_OPT = typer.Option(False, "--all", help="Follow next_cursor and list every item.")


def list_paged(client: Any, path: str, params: list[tuple[str, Any]], columns: Sequence[Column], *,
               limit: int | None, cursor: str | None, follow: bool, fmt: Format, title: str | None = None) -> list[Any]:
    """Fetch one page (or, with ``follow``, every page) and print it; a hint names the next cursor."""
    items: list[Any] = []
    next_cursor: str | None = None
    for page, next_cursor in client.pages(path, params, limit=limit, cursor=cursor, follow=follow):
        items.extend(page)
    print_list(items, columns, fmt, title)
    if next_cursor and not follow:
        info(f"more items: --cursor {next_cursor} (or --all)")
    return items
