"""``truckx watch``: the live event feed (``/api/v1/admin/events``) as a Rich live view, or JSON lines."""

from __future__ import annotations

import collections
import json
import sys
import time
from typing import Any, List, Optional
from urllib.parse import urlencode

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from .client import EXIT_AUTH, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_UNREACHABLE, CliError, make_client, settings_of
from .output import info, stdout

STYLES = {"alarm": "bold red", "device_status": "cyan", "command_status": "magenta", "video": "green",
          "location": ""}


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
    rest = {k: v for k, v in event.items() if k not in ("type", "at", "imei")}
    return json.dumps(rest, separators=(",", ":"))[:120]


class View:
    """What the live view shows: counters per event type, devices online, the latest events."""

    def __init__(self, rows: int) -> None:
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=rows)
        self.counts: collections.Counter[str] = collections.Counter()
        self.online: set[str] = set()
        self.status = "connecting"

    def add(self, event: dict[str, Any]) -> None:
        self.events.appendleft(event)
        self.counts[str(event.get("type"))] += 1
        if event.get("type") == "device_status" and event.get("imei"):
            (self.online.add if event.get("online") else self.online.discard)(event["imei"])

    def render(self) -> Group:
        counts = "  ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())) or "no events yet"
        head = Text(f"truckx events: {self.status}  |  {counts}  |  came online while watching: {len(self.online)}")
        table = Table(expand=True, header_style="bold")
        for col in ("Time", "Type", "IMEI", "Detail"):
            table.add_column(col, overflow="fold")
        for e in self.events:
            table.add_row(str(e.get("at", "")), Text(str(e.get("type")), style=STYLES.get(str(e.get("type")), "")),
                          str(e.get("imei", "")), summary(e))
        return Group(head, table)


def events_url(http_url: str, imeis: list[str]) -> str:
    ws = "wss://" + http_url[len("https://"):] if http_url.startswith("https://") else "ws://" + http_url[len("http://"):]
    query = urlencode([("imei", i) for i in imeis])
    return f"{ws}/api/v1/admin/events" + (f"?{query}" if query else "")


def watch(ctx: typer.Context,
          imei: Optional[List[str]] = typer.Option(None, "--imei", help="Only events of this device (repeatable)."),
          as_json: bool = typer.Option(False, "--json", help="Print each event as one JSON line instead."),
          count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Stop after this many events."),
          seconds: Optional[float] = typer.Option(None, "--seconds", min=0, help="Stop after this many seconds."),
          rows: int = typer.Option(25, "--rows", min=1, help="Events kept on screen in the live view.")) -> None:
    """Follow the live feed: locations, alarms, devices going on/offline, command status, videos."""
    client = make_client(settings_of(ctx))
    client.close()  # only its URL and token are needed
    url = events_url(client.url, imei or [])
    deadline = time.monotonic() + seconds if seconds is not None else None
    view = View(rows)
    seen = 0
    try:
        ws = connect(url, additional_headers={"Authorization": f"Bearer {client.token}"}, open_timeout=10,
                     close_timeout=2, max_size=4 * 1024 * 1024)
    except InvalidStatus as exc:
        status = exc.response.status_code
        try:
            message = json.loads(exc.response.body or b"{}")["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.response.reason_phrase
        if status == 401:
            raise CliError(f"event feed: not authenticated ({message}); run `truckx login`", EXIT_AUTH) from None
        if status == 403:
            raise CliError(f"event feed: forbidden: {message}", EXIT_AUTH) from None
        if status == 404:
            raise CliError(f"event feed: not found ({message}); does the server have /api/v1/admin/events?",
                           EXIT_NOT_FOUND) from None
        raise CliError(f"event feed refused ({status}): {message}", EXIT_ERROR) from None
    except InvalidURI as exc:
        raise CliError(f"invalid server URL: {exc}", 2) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise CliError(f"cannot reach the event feed at {url.split('?')[0]}: {exc or type(exc).__name__} "
                       "(is the server running? check --url / TRUCKX_URL)", EXIT_UNREACHABLE) from None

    def remaining() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def events() -> Any:
        nonlocal seen
        while count is None or seen < count:
            left = remaining()
            if left is not None and left <= 0:
                return
            try:
                raw = ws.recv(timeout=min(1.0, left) if left is not None else 1.0)
            except TimeoutError:
                yield None  # a tick: lets the live view refresh and the deadline be checked
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            seen += 1
            yield event

    try:
        with ws:
            if as_json:
                for event in events():
                    if event is not None:
                        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
                        sys.stdout.flush()
            else:
                view.status = f"connected to {url.split('?')[0]}" + (f" (imei {', '.join(imei)})" if imei else "")
                with Live(view.render(), console=stdout(), refresh_per_second=4, transient=False) as live:
                    for event in events():
                        if event is not None:
                            view.add(event)
                        live.update(view.render())
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise CliError(f"the server closed the event feed (code {code})", EXIT_UNREACHABLE) from None
    except KeyboardInterrupt:
        info("stopped")
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    app.command()(watch)
