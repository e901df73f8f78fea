"""``truckx watch``: the live event feed (``/api/v1/admin/events``) as a Rich live view with device names,
or JSON lines; reconnects with backoff when the server restarts."""

from __future__ import annotations

import collections
import json
import sys
import time
from typing import Any, List, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

from .client import EXIT_USAGE, CliError, make_client, registered, settings_of
from .common import command, view_of
from .events import EVENT_TYPES, Feed
from .names import DeviceNames
from .output import Col, TimeView, build_table, info, stdout

STYLES = {"alarm": "bold red", "device_status": "cyan", "command_status": "magenta", "video": "green",
          "geofence": "yellow", "location": ""}


def summary(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "location":
        loc = event.get("location") or event
        speed = loc.get("speed_kmh")
        return f"{loc.get('lat')},{loc.get('lon')}" + (f"  {speed:g} km/h" if isinstance(speed, (int, float)) else "")
    if kind == "alarm":
        alarm = event.get("alarm") or {}
        return f"{alarm.get('type')} {alarm.get('status', '')} id={alarm.get('id')}"
    if kind == "device_status":
        return "online" if event.get("online") else "offline"
    if kind == "command_status":
        cmd = event.get("command") or {}
        return f"{cmd.get('command')} -> {cmd.get('status')} id={cmd.get('id')}"
    if kind == "video":
        video = event.get("video") or event
        return f"{video.get('name')} {video.get('size', '')} bytes complete={video.get('complete', '')}"
    if kind == "geofence":
        ev = event.get("geofence_event") or {}
        return f"{ev.get('transition')} geofence {ev.get('geofence_id')} at {ev.get('lat')},{ev.get('lon')}"
    rest = {k: v for k, v in event.items() if k not in ("type", "at", "imei")}
    return json.dumps(rest, separators=(",", ":"))[:120]


def parse_types(values: list[str] | None) -> set[str]:
    types = {t.strip().lower() for v in values or [] for t in v.split(",") if t.strip()}
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise CliError(f"--type: unknown event type {', '.join(unknown)}; use {', '.join(EVENT_TYPES)}", EXIT_USAGE)
    return types


class View:
    """What the live view shows: counters per event type, devices online, the latest events."""

    def __init__(self, rows: int, names: DeviceNames | None, view: TimeView) -> None:
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=rows)
        self.counts: collections.Counter[str] = collections.Counter()
        self.online: set[str] = set()
        self.status = "connecting"
        self.names = names
        self.view = view
        self.columns = [
            Col("Time", lambda e: self.view.clock(e.get("at")), cut=None, priority=1),
            Col("Type", "type", cut=5, priority=2), Col("IMEI", "imei", cut=None, priority=0),
            Col("Name", "name", cut=6, priority=4), Col("Detail", "detail", cut=10, priority=3),
        ]

    def add(self, event: dict[str, Any]) -> None:
        imei = event.get("imei")
        row = {"at": event.get("at"), "type": str(event.get("type")), "imei": imei if isinstance(imei, str) else "",
               "name": self.names.get(imei) if self.names else None, "detail": summary(event)}
        self.events.appendleft(row)
        self.counts[row["type"]] += 1
        if event.get("type") == "device_status" and isinstance(imei, str):
            (self.online.add if event.get("online") else self.online.discard)(imei)
        if len(self.online) > 100_000:  # bounded, whatever the feed sends
            self.online.clear()

    def render(self, width: int) -> Group:
        counts = "  ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())) or "no events yet"
        head = Text(f"truckx events: {self.status}\n{counts}  |  came online while watching: {len(self.online)}")
        if not self.events:
            return Group(head)
        table, _left_out = build_table(list(self.events), self.columns, self.view, width,
                                       styles={"Type": lambda v: STYLES.get(v, "")})
        return Group(head, table)


def watch(ctx: typer.Context,
          imei: Optional[List[str]] = typer.Option(None, "--imei", metavar="IMEI",
                                                   help="Only events of this device (repeatable, or comma-separated)."),
          type_: Optional[List[str]] = typer.Option(None, "--type", metavar="TYPES",
                                                    help="Only these event types (repeatable, or comma-separated): "
                                                         + ", ".join(EVENT_TYPES) + "."),
          as_json: bool = typer.Option(False, "--json", help="Print each event as one JSON line instead."),
          count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Stop after this many events."),
          seconds: Optional[float] = typer.Option(None, "--seconds", min=0, help="Stop after this many seconds."),
          rows: int = typer.Option(25, "--rows", min=1, max=1000, help="Events kept on screen in the live view."),
          reconnect: bool = typer.Option(True, "--reconnect/--no-reconnect",
                                         help="Once connected, connect again with backoff when the feed closes "
                                              "(server restart) instead of exiting.")) -> None:
    """Follow the live feed: locations, alarms, devices going on/offline, command status, videos, geofences.

    The live view shows each device's name beside its IMEI (looked up once per device). If the server
    restarts, the feed is opened again with backoff (events in the gap are not replayed).
    """
    types = parse_types(type_)
    client = make_client(settings_of(ctx))
    ctx.call_on_close(client.close)
    imeis = list(registered(client, imei))  # an unregistered --imei is an error (4), not a silent feed
    deadline = time.monotonic() + seconds if seconds is not None else None
    view = View(rows, None if as_json else DeviceNames(client), view_of(ctx))
    if view.names is not None:
        view.names.prefetch()
    seen = 0

    def notify(line: str) -> None:
        view.status = line
        if as_json:
            info(f"truckx: {line}")

    def remaining() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def events(feed: Feed) -> Any:
        nonlocal seen
        while count is None or seen < count:
            left = remaining()
            if (left is not None and left <= 0) or feed.ws is None:
                return
            event = feed.next(min(1.0, left) if left is not None else 1.0, deadline)
            if event is None:
                yield None  # a tick: lets the live view refresh and the deadline be checked
                continue
            if types and event.get("type") not in types:
                continue
            seen += 1
            yield event

    feed = Feed(client.url, client.token, imeis, reconnect=reconnect, notify=notify)
    feed.open()
    try:
        with feed:
            if as_json:
                for event in events(feed):
                    if event is not None:
                        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
                        sys.stdout.flush()
            else:
                console = stdout()
                view.status = feed.status + (f"; imei {', '.join(imeis)}" if imeis else "") \
                    + (f"; type {', '.join(sorted(types))}" if types else "")
                with Live(view.render(console.width), console=console, refresh_per_second=4,
                          transient=False) as live:
                    for event in events(feed):
                        if event is not None:
                            view.add(event)
                        live.update(view.render(console.width))
    except KeyboardInterrupt:
        info("stopped")
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    command(app, example=["truckx watch --type alarm,command_status",
                          "truckx watch --imei 356938035643809 --json --seconds 60 > events.jsonl"])(watch)
