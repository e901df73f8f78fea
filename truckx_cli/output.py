"""Rendering (tables by default, ``--json`` / ``--csv`` for scripts) and parsing of times given on the
command line (RFC 3339 or relative: ``30m``, ``2h``, ``7d``).

Tables fit the terminal (80 columns included) without breaking an IMEI, an id or a time inside a value:
each :class:`Col` says whether its values may be cut (with an ellipsis) and how important it is; when
the terminal is narrow, times switch to a shorter form, then the least important columns are left out
(named under the table). Times in tables are shown in the local zone, or ``--tz ZONE``, or relative to
now with ``--relative``; JSON and CSV always carry the server's RFC 3339 UTC values.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .client import EXIT_USAGE, CliError

UTC = dt.timezone.utc

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


# -- times shown -------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 string (as the server sends) as an aware datetime; None for anything else."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    try:
        return dt.datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" else value)
    except ValueError:
        return None


def zone(name: str | None) -> dt.tzinfo | None:
    """``--tz``: None (or ``local``) is the machine's zone; ``UTC``; or an IANA name like Europe/Madrid."""
    if name is None or name.strip().lower() in ("", "local"):
        return None
    if name.strip().upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise CliError(f"--tz: unknown time zone {name!r}; use an IANA name like Europe/Madrid, UTC or local",
                       EXIT_USAGE) from None


def ago(delta_s: float) -> str:
    """A duration as people say it: ``12 s ago``, ``3 min ago``, ``1 h 5 min ago``, ``2 d 3 h ago``,
    ``in 4 min`` for the future."""
    future = delta_s < 0
    s = int(abs(delta_s))
    if s < 60:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86400:
        h, m = divmod(s // 60, 60)
        text = f"{h} h" + (f" {m} min" if m else "")
    else:
        d, h = divmod(s // 3600, 24)
        text = f"{d} d" + (f" {h} h" if h else "")
    return f"in {text}" if future else f"{text} ago"


@dataclass
class TimeView:
    """How tables show times: in ``tz`` (None: the local zone), or relative to ``now``."""

    tz: dt.tzinfo | None = None
    relative: bool = False
    #: the time "ago" is counted from (None: the moment each time is shown)
    fixed_now: dt.datetime | None = None

    @property
    def now(self) -> dt.datetime:
        return self.fixed_now or dt.datetime.now(UTC)

    def local(self, when: dt.datetime) -> dt.datetime:
        return when.astimezone(self.tz) if self.tz is not None else when.astimezone()

    def show(self, value: Any, short: bool = False) -> str:
        when = parse_time(value)
        if when is None:
            return cell(value)
        if self.relative:
            return ago((self.now - when).total_seconds())
        return self.local(when).strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")

    def clock(self, value: Any) -> str:
        """The time of day (for live views), or how long ago."""
        when = parse_time(value)
        if when is None:
            return cell(value)
        if self.relative:
            return ago((self.now - when).total_seconds())
        return self.local(when).strftime("%H:%M:%S")

    def long(self, value: Any) -> str:
        """For one record (``show`` commands): the zone's time with its offset, and how long ago."""
        when = parse_time(value)
        if when is None:
            return cell(value)
        rel = ago((self.now - when).total_seconds())
        if self.relative:
            return rel
        return f"{self.local(when).strftime('%Y-%m-%d %H:%M:%S %Z')} ({rel})"

    def caption(self) -> str:
        if self.relative:
            return "times relative to now"
        local = self.local(self.now)
        offset = local.strftime("%z")
        offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        name = getattr(self.tz, "key", None) or local.strftime("%Z") or offset
        return f"times in {name}" + (f" ({offset})" if name != offset and name not in ("UTC",) else "")


# -- tables that fit ---------------------------------------------------------------------------

#: columns with a priority at or above this are left out before times are shortened
EXTRA = 5
GAP = 2  # spaces between columns


@dataclass
class Col:
    """One table column. ``cut``: the narrowest it may be cut to (with an ellipsis); None for values that
    must never be cut (IMEIs, ids, times). ``priority``: 0 is kept longest; higher ones go first when the
    terminal is narrow (those of ``EXTRA`` and above before times are shortened)."""

    header: str
    get: str | Callable[[dict[str, Any]], Any]
    time: bool = False
    cut: int | None = 8
    priority: int = 1
    justify: str = "left"

    def __post_init__(self) -> None:
        if self.time:
            self.cut = None  # a time is never cut


def _render(cols: Sequence[Col], items: Sequence[dict[str, Any]], view: TimeView, short: bool) -> list[list[str]]:
    rows = []
    for item in items:
        row = []
        for col in cols:
            value = _get(item, col.get)
            row.append(view.show(value, short) if col.time else cell(value))
        rows.append(row)
    return rows


def fit(cols: Sequence[Col], items: Sequence[dict[str, Any]], view: TimeView,
        width: int) -> tuple[list[int], list[int], list[list[str]]]:
    """Which columns to show (indexes), their widths, and the rendered rows, for a terminal ``width`` wide."""
    has_time = any(c.time for c in cols) and not view.relative
    keep_order = sorted(range(len(cols)), key=lambda i: (cols[i].priority, i))  # most important first
    # tried in order until one fits: full times while leaving out the extra columns one by one, then short
    # times while leaving out the others (the most important column always stays)
    extras = sum(1 for c in cols if c.priority >= EXTRA)
    shapes = [(False, n) for n in range(len(cols), len(cols) - extras - 1, -1)]
    shapes += [(has_time, n) for n in range(len(cols) - extras, 0, -1)]
    rendered: dict[bool, list[list[str]]] = {}
    best = None
    for short, n in shapes:
        if short not in rendered:
            rendered[short] = _render(cols, items, view, short)
        rows = rendered[short]
        chosen = sorted(keep_order[:n])
        natural = [max([cell_len(cols[i].header)] + [cell_len(r[i]) for r in rows]) for i in chosen]
        least = [min(w, max(cols[i].cut, cell_len(cols[i].header))) if cols[i].cut is not None else w
                 for i, w in zip(chosen, natural)]
        need = sum(least) + GAP * (len(chosen) - 1)
        best = (chosen, natural, least, short)
        if need <= width:
            break
    assert best is not None
    chosen, natural, least, short = best
    widths = list(least)
    spare = width - (sum(widths) + GAP * (len(chosen) - 1))
    for k, i in enumerate(chosen):  # give what is left to the cut columns, in column order
        if spare <= 0:
            break
        add = min(spare, natural[k] - widths[k])
        widths[k] += add
        spare -= add
    return chosen, widths, rendered[short]


def build_table(items: Sequence[dict[str, Any]], cols: Sequence[Col], view: TimeView, width: int,
                title: str | None = None,
                styles: dict[str, Callable[[str], str]] | None = None) -> tuple[Table, list[str]]:
    """The table for a terminal ``width`` wide, and the headers of the columns left out."""
    chosen, widths, rows = fit(cols, items, view, width)
    table = Table(title=title, box=None, padding=(0, GAP // 2), pad_edge=False, show_edge=False,
                  header_style="bold")
    for i, w in zip(chosen, widths):
        col = cols[i]
        table.add_column(col.header, width=w, min_width=w, no_wrap=True, justify=col.justify,  # type: ignore[arg-type]
                         overflow="ellipsis" if col.cut is not None else "fold")
    for row in rows:
        table.add_row(*(Text(row[i], style=(styles or {}).get(cols[i].header, lambda _v: "")(row[i]))
                        for i in chosen))
    return table, [cols[i].header for i in range(len(cols)) if i not in chosen]


def print_table(items: Sequence[dict[str, Any]], cols: Sequence[Col], view: TimeView,
                title: str | None = None) -> None:
    console = stdout()
    table, left_out = build_table(items, cols, view, console.width, title)
    console.print(table)
    notes = []
    if any(c.time for c in cols if c.header not in left_out):
        notes.append(view.caption())
    if left_out:
        notes.append(f"left out to fit {console.width} columns: {', '.join(left_out)} (see --json)")
    if notes:
        info("; ".join(notes))


def print_list(items: Sequence[dict[str, Any]], columns: Sequence[Col], fmt: Format, view: TimeView | None = None,
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
                fields = [c.get for c in columns if isinstance(c.get, str)]
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
    print_table(items, columns, view or TimeView(), title)


def print_object(obj: dict[str, Any], as_json: bool, fields: Iterable[str] | None = None,
                 view: TimeView | None = None) -> None:
    """One record as JSON or as a two-column table of its fields (times in the chosen zone)."""
    if as_json:
        print_json(obj)
        return
    view = view or TimeView()
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key in fields or obj.keys():
        value = obj.get(key)
        table.add_row(key, Text(view.long(value) if parse_time(value) else cell(value)))
    stdout().print(table)


# -- times given -------------------------------------------------------------------------------

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


def parse_window(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``--since`` / ``--until`` as RFC 3339 UTC; ``--until`` at or before ``--since`` is a usage error."""
    now = dt.datetime.now(UTC)
    start, end = parse_when(since, "--since", now), parse_when(until, "--until", now)
    if start is not None and end is not None and parse_time(end) <= parse_time(start):  # type: ignore[operator]
        raise CliError(f"--until ({until}) must be after --since ({since}): the window is empty", EXIT_USAGE)
    return start, end


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
CURSOR_OPT = typer.Option(None, "--cursor", metavar="CURSOR",
                          help="Start at this page cursor (from a previous listing).")
ALL_OPT = typer.Option(False, "--all", help="Follow next_cursor and list every item.")


def list_paged(client: Any, path: str, params: list[tuple[str, Any]], columns: Sequence[Col], *,
               limit: int | None, cursor: str | None, follow: bool, fmt: Format, view: TimeView | None = None,
               title: str | None = None) -> list[Any]:
    """Fetch one page (or, with ``follow``, every page) and print it; a hint names the next cursor."""
    items: list[Any] = []
    next_cursor: str | None = None
    for page, next_cursor in client.pages(path, params, limit=limit, cursor=cursor, follow=follow):
        items.extend(page)
    print_list(items, columns, fmt, view, title)
    if next_cursor and not follow:
        info(f"more items: --cursor {next_cursor} (or --all)")
    return items
