"""``truckx alarms``: search with filters, show one, acknowledge or clear several at once (by id or by the
same filters as ``list``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import typer

from truckx_server.vocab import ALARM_TYPES

from .client import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE, Client, CliError, client_of, registered, seg
from .common import Group, command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, Format, TimeView, cell, choose, info,
                     list_paged, parse_window, print_json, print_list, print_object, stdout)

app = typer.Typer(help="Search and handle alarms.", no_args_is_help=True, cls=Group)

BASE = "/api/v1/admin/alarms"
TYPES = ALARM_TYPES
STATUSES = ("active", "acknowledged", "cleared")
#: ack/clear: more than this many alarms asks for confirmation (unless --yes)
CONFIRM_ABOVE = 10
#: ack/clear: the most alarms one run changes (narrow the filters, or run again, for more)
MAX_BULK = 10_000


def _file_name(f: Any) -> str:
    return f.get("name", "?") if isinstance(f, dict) else str(f)


def file_arrived(f: Any) -> bool:
    if not isinstance(f, dict):
        return False
    for key in ("arrived", "complete", "uploaded", "has_video", "video"):
        if key in f:
            return bool(f[key])
    return False


def _files(alarm: dict[str, Any]) -> str:
    files = alarm.get("files") or []
    if not files:
        return ""
    arrived = sum(1 for f in files if file_arrived(f))
    return f"{arrived}/{len(files)}"


COLUMNS = [
    Col("ID", "id", cut=None, priority=0), Col("Time", "ts", time=True, priority=2),
    Col("IMEI", "imei", cut=None, priority=1), Col("Type", "type", cut=5, priority=3),
    Col("Status", "status", cut=6, priority=4),
    Col("Videos", _files, cut=None, priority=6),
    Col("Position", lambda a: f"{a['lat']:.4f},{a['lon']:.4f}" if a.get("lat") is not None else "", cut=None,
        priority=7),
]


def parse_bbox(text: str | None) -> str | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError:
        raise CliError("--bbox must be minLon,minLat,maxLon,maxLat (four numbers)", EXIT_USAGE) from None
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise CliError("--bbox: longitudes must be within -180..180 and minLat <= maxLat within -90..90", EXIT_USAGE)
    return ",".join(p.strip() for p in parts)


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options also take comma-separated values."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


# the filters of `list`, shared by `ack` and `clear`
IMEI_OPT = typer.Option(None, "--imei", metavar="IMEI", help="Only this device (repeatable, or comma-separated).")
TYPE_OPT = typer.Option(None, "--type", metavar="TYPE", help="Only this type (repeatable): " + ", ".join(TYPES) + ".")
STATUS_OPT = typer.Option(None, "--status", metavar="STATUS", help="Only this status (repeatable): active, "
                          "acknowledged, cleared.")
SINCE_OPT = typer.Option(None, "--since", metavar="TIME", help="From this time: RFC 3339 or relative (2h, 7d).")
UNTIL_OPT = typer.Option(None, "--until", metavar="TIME", help="Before this time: RFC 3339 or relative.")
BBOX_OPT = typer.Option(None, "--bbox", metavar="BOX", help="minLon,minLat,maxLon,maxLat")
VIDEO_OPT = typer.Option(None, "--has-video/--no-video", help="Only alarms whose video has (or has not) arrived.")


@dataclass
class Filters:
    imeis: list[str]
    types: list[str]
    statuses: list[str]
    since: str | None
    until: str | None
    bbox: str | None
    has_video: bool | None

    @classmethod
    def parse(cls, imei: list[str] | None, type_: list[str] | None, status: list[str] | None, since: str | None,
              until: str | None, bbox: str | None, has_video: bool | None) -> "Filters":
        types = [t.upper() for t in _split(type_)]
        for t in types:
            if t not in TYPES:
                raise CliError(f"--type must be one of {', '.join(TYPES)}, not {t!r}", EXIT_USAGE)
        statuses = [s.lower() for s in _split(status)]
        for s in statuses:
            if s not in STATUSES:
                raise CliError(f"--status must be one of {', '.join(STATUSES)}, not {s!r}", EXIT_USAGE)
        start, end = parse_window(since, until)
        return cls(_split(imei), list(dict.fromkeys(types)), list(dict.fromkeys(statuses)), start, end,
                   parse_bbox(bbox), has_video)

    def given(self) -> bool:
        return bool(self.imeis or self.types or self.statuses or self.since or self.until or self.bbox
                    or self.has_video is not None)

    def params(self) -> list[tuple[str, Any]]:
        return ([("imei", i) for i in self.imeis] + [("type", t) for t in self.types]
                + [("status", s) for s in self.statuses]
                + [("since", self.since), ("until", self.until), ("bbox", self.bbox),
                   ("has_video", None if self.has_video is None else ("true" if self.has_video else "false"))])

    def check(self, client: Client) -> None:
        registered(client, self.imeis)  # a typo in an IMEI is an error (2 or 4), not an empty list


@command(app, "list", example=["truckx alarms list --since 2h --status active",
                               "truckx alarms list --imei 356938035643809 --type crash --has-video",
                               "truckx alarms list --since 2026-11-27 --until 2026-11-28 --all --csv > alarms.csv"])
def list_(
    ctx: typer.Context,
    imei: Optional[List[str]] = IMEI_OPT, type_: Optional[List[str]] = TYPE_OPT,
    status: Optional[List[str]] = STATUS_OPT, since: Optional[str] = SINCE_OPT, until: Optional[str] = UNTIL_OPT,
    bbox: Optional[str] = BBOX_OPT, has_video: Optional[bool] = VIDEO_OPT,
    limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
    as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT,
) -> None:
    """List alarms, newest first, matching every filter given."""
    fmt = choose(as_json, as_csv)
    filters = Filters.parse(imei, type_, status, since, until, bbox, has_video)
    client = client_of(ctx)
    filters.check(client)
    list_paged(client, BASE, filters.params(), COLUMNS, limit=limit, cursor=cursor, follow=all_, fmt=fmt,
               view=view_of(ctx))


def _show(alarm: dict[str, Any], as_json: bool, view: TimeView) -> None:
    if as_json:
        print_json(alarm)
        return
    print_object(alarm, False, [k for k in alarm if k != "files"], view=view)
    files = alarm.get("files") or []
    if files:
        console = stdout()
        console.print("files:")
        for f in files:
            console.print(f"  {_file_name(f)}  {'video arrived' if file_arrived(f) else 'video pending'}"
                          + (f"  {cell(f.get('size'))} bytes" if isinstance(f, dict) and f.get("size") else ""),
                          markup=False)


@command(app, example="truckx alarms show 0b0c5a5e-3f0e-4a53-9a1f-6f1f2d9d8a11")
def show(ctx: typer.Context, alarm_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON_OPT) -> None:
    """Show one alarm with its files."""
    _show(client_of(ctx).get(f"{BASE}/{seg(alarm_id, 'ID')}", what=f"alarm {alarm_id}"), as_json, view_of(ctx))


IDS_ARG = typer.Argument(None, metavar="ID", help="Alarm ids; or none, and filters instead.")
YES_OPT = typer.Option(False, "--yes", "-y", help=f"Do not ask for confirmation (asked above {CONFIRM_ABOVE} alarms).")


@command(app, example=["truckx alarms ack 0b0c5a5e-3f0e-4a53-9a1f-6f1f2d9d8a11 --note 'driver called'",
                       "truckx alarms ack --imei 356938035643809 --type vibration --since 1d --yes"])
def ack(ctx: typer.Context, alarm_ids: Optional[List[str]] = IDS_ARG,
        note: Optional[str] = typer.Option(None, "--note", metavar="TEXT",
                                           help="A note stored with each acknowledgement."),
        imei: Optional[List[str]] = IMEI_OPT, type_: Optional[List[str]] = TYPE_OPT,
        status: Optional[List[str]] = STATUS_OPT, since: Optional[str] = SINCE_OPT, until: Optional[str] = UNTIL_OPT,
        bbox: Optional[str] = BBOX_OPT, has_video: Optional[bool] = VIDEO_OPT,
        yes: bool = YES_OPT, as_json: bool = JSON_OPT) -> None:
    """Acknowledge alarms (active -> acknowledged): the ids given, or every alarm matching the filters
    (those of `alarms list`; --status defaults to active)."""
    filters = Filters.parse(imei, type_, status, since, until, bbox, has_video)
    _change(ctx, "ack", alarm_ids or [], filters, {"note": note} if note else {}, yes, as_json)


@command(app, example=["truckx alarms clear 0b0c5a5e-3f0e-4a53-9a1f-6f1f2d9d8a11",
                       "truckx alarms clear --status acknowledged --until 7d"])
def clear(ctx: typer.Context, alarm_ids: Optional[List[str]] = IDS_ARG,
          imei: Optional[List[str]] = IMEI_OPT, type_: Optional[List[str]] = TYPE_OPT,
          status: Optional[List[str]] = STATUS_OPT, since: Optional[str] = SINCE_OPT,
          until: Optional[str] = UNTIL_OPT, bbox: Optional[str] = BBOX_OPT, has_video: Optional[bool] = VIDEO_OPT,
          yes: bool = YES_OPT, as_json: bool = JSON_OPT) -> None:
    """Clear alarms (-> cleared): the ids given, or every alarm matching the filters (those of
    `alarms list`; --status defaults to active and acknowledged)."""
    filters = Filters.parse(imei, type_, status, since, until, bbox, has_video)
    _change(ctx, "clear", alarm_ids or [], filters, {}, yes, as_json)


VERBS = {"ack": ("acknowledge", "acknowledged", ["active"]), "clear": ("clear", "cleared", ["active", "acknowledged"])}


def _change(ctx: typer.Context, action: str, ids: list[str], filters: Filters, body: dict[str, Any], yes: bool,
            as_json: bool) -> None:
    verb, done_word, default_statuses = VERBS[action]
    if ids and filters.given():
        raise CliError("give alarm ids or filters, not both", EXIT_USAGE)
    if not ids and not filters.given():
        raise CliError(f"give the ids of the alarms to {verb}, or filters (--imei, --type, --since, ...; "
                       "see `truckx alarms list --help`)", EXIT_USAGE)
    client = client_of(ctx)
    view = view_of(ctx)
    single = len(ids) == 1
    if ids:
        targets = list(dict.fromkeys(ids))
        if len(targets) > MAX_BULK:
            raise CliError(f"at most {MAX_BULK} ids at once", EXIT_USAGE)
    else:
        filters.check(client)
        if not filters.statuses:
            filters.statuses = default_statuses
        targets = []
        for page, _next in client.pages(BASE, filters.params(), limit=1000, cursor=None, follow=True):
            targets.extend(a["id"] for a in page)
            if len(targets) > MAX_BULK:
                raise CliError(f"more than {MAX_BULK} alarms match; narrow the filters (--since, --until, --imei)",
                               EXIT_USAGE)
        if not targets:
            info(f"no alarm matches (status {', '.join(filters.statuses)}): nothing to {verb}")
            if as_json:
                print_json([])
            return
    if len(targets) > CONFIRM_ABOVE and not yes:
        if not typer.confirm(f"{verb.capitalize()} {len(targets)} alarms?", default=False, err=True):
            raise CliError("nothing changed (not confirmed; --yes skips the question)", EXIT_ERROR)
    changed: list[dict[str, Any]] = []
    failed: list[CliError] = []
    for alarm_id in targets:
        try:
            result = client.post(f"{BASE}/{seg(alarm_id, 'ID')}/{action}", body, what=f"{action} {alarm_id}")
            changed.append(_alarm_of(client, alarm_id, result))
        except CliError as exc:
            if exc.code not in (EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE):
                raise  # auth, unreachable: the rest would fail the same way
            failed.append(exc)
            if not single:
                info(f"truckx: {exc.message}")
    if single and not failed:
        _show(changed[0], as_json, view)
    elif not single:
        if as_json:
            print_json(changed)
        elif changed:
            print_list(changed, COLUMNS, Format.table, view)
        info(f"{done_word} {len(changed)} of {len(targets)} alarms")
    if failed:
        if single:
            raise failed[0]
        code = EXIT_NOT_FOUND if all(f.code == EXIT_NOT_FOUND for f in failed) else EXIT_ERROR
        raise CliError(f"{len(failed)} of {len(targets)} alarms could not be {done_word} (see above)", code)


def _alarm_of(client: Any, alarm_id: str, body: Any) -> dict[str, Any]:
    """The alarm after a change: the response when it is the alarm, else fetched."""
    if isinstance(body, dict) and body.get("id") == alarm_id and "status" in body:
        return body
    if isinstance(body, dict) and isinstance(body.get("alarm"), dict):
        return body["alarm"]
    return client.get(f"{BASE}/{seg(alarm_id, 'ID')}", what=f"alarm {alarm_id}")
