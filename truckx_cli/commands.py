"""``truckx commands``: send a command to a device (optionally following it to its result), check a status."""

from __future__ import annotations

import contextlib
import enum
import math
import time
from typing import Any, Callable, Optional

import typer

from truckx_server.vocab import COMMANDS

from .client import EXIT_AUTH, EXIT_ERROR, EXIT_USAGE, Client, CliError, check_imei, client_of, registered, seg
from .common import Group, command, view_of
from .events import Feed
from .output import JSON_OPT, TimeView, info, parse_when, print_object

app = typer.Typer(help="Send commands to devices.", no_args_is_help=True, cls=Group)

FINAL = ("succeeded", "failed", "expired", "cancelled")
FIELDS = ["id", "imei", "command", "args", "status", "created_by", "created_at", "sent_at", "finished_at",
          "expires_at", "detail"]
#: while following a command on the event feed, its state is also read this often (a missed event is
#: noticed)
RECHECK_S = 5.0


#: the command names the server knows (truckx_server.vocab), as a choice for Typer
CommandName = enum.Enum("CommandName", {name: name for name in COMMANDS}, type=str)  # type: ignore[misc]


def _get(client: Client, command_id: str, wait: int = 0) -> dict[str, Any]:
    return client.get(f"/api/v1/admin/commands/{seg(command_id, 'ID')}", params={"wait": wait} if wait else None,
                      timeout=wait + 15, what=f"command {command_id}")


def wait_final(client: Client, command_id: str, timeout_s: float) -> dict[str, Any]:
    """Hold ``GET /commands/{id}?wait=`` (at most 60 s a call) until a final state or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        wait = max(0, min(60, math.ceil(remaining)))
        cmd = _get(client, command_id, wait)
        if cmd.get("status") in FINAL or remaining <= 0 or wait == 0:
            return cmd


class Follower:
    """Reports a command's state changes as they happen (``queued -> sent -> succeeded``) from the event
    feed, and the device going online or offline; reads the command now and then too, and only that
    when there is no feed."""

    def __init__(self, client: Client, cmd: dict[str, Any], feed: Feed | None, view: TimeView,
                 say: Callable[[str], None]) -> None:
        self.client = client
        self.cmd = cmd
        self.feed = feed
        self.view = view
        self.say = say

    def _update(self, new: dict[str, Any], at: Any = None) -> None:
        old = self.cmd.get("status")
        self.cmd = {**self.cmd, **new}
        if new.get("status") != old:
            when = self.view.clock(at or self.view.now)
            self.say(f"{when}  {old} -> {new.get('status')}"
                     + (f" ({new['detail']})" if new.get("detail") and new.get("status") in FINAL else ""))

    def run(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        checked = time.monotonic()
        cid, imei = self.cmd["id"], self.cmd.get("imei")
        while self.cmd.get("status") not in FINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.feed is None or self.feed.ws is None:  # no feed: short held reads, changes between them
                self._update(_get(self.client, cid, max(1, min(5, math.ceil(left)))))
                continue
            event = self.feed.next(min(1.0, left), deadline)
            if event is None:
                if time.monotonic() - checked >= RECHECK_S:
                    checked = time.monotonic()
                    self._update(_get(self.client, cid))
                continue
            if event.get("type") == "command_status" and isinstance(event.get("command"), dict) \
                    and event["command"].get("id") == cid:
                self._update(event["command"], event.get("at"))
            elif event.get("type") == "device_status" and event.get("imei") == imei:
                self.say(f"{self.view.clock(event.get('at'))}  device {imei} "
                         + ("is online" if event.get("online") else "went offline"))
        return self.cmd


def _finish(cmd: dict[str, Any], as_json: bool, waited: bool, timeout_s: float, view: TimeView) -> None:
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd], view=view)
    status = cmd.get("status")
    if status in ("failed", "expired", "cancelled"):
        raise CliError(f"command {cmd.get('id')} {status}" + (f": {cmd['detail']}" if cmd.get("detail") else ""),
                       EXIT_ERROR)
    if waited and status not in FINAL:
        raise CliError(f"command {cmd.get('id')} is still {status} after {timeout_s:g} s "
                       f"(check later: truckx commands status {cmd.get('id')})", EXIT_ERROR)


@command(app, example=["truckx commands send 356938035643809 reset --wait",
                       "truckx commands send 356938035643809 set_report_interval --seconds 30",
                       "truckx commands send 356938035643809 request_video --from 10m --to now --wait --timeout 300"])
def send(ctx: typer.Context,
         imei: str = typer.Argument(..., metavar="IMEI", help="The device."),
         command_name: CommandName = typer.Argument(..., metavar="COMMAND",
                                                    help="reset, set_report_interval or request_video."),
         seconds: Optional[int] = typer.Option(None, "--seconds", min=1, max=86400,
                                               help="set_report_interval: the interval in seconds."),
         from_: Optional[str] = typer.Option(None, "--from", metavar="TIME",
                                             help="request_video: window start (RFC 3339 or 10m)."),
         to: Optional[str] = typer.Option(None, "--to", metavar="TIME",
                                          help="request_video: window end (RFC 3339, relative, now)."),
         ttl: Optional[int] = typer.Option(None, "--ttl", min=1, help="Seconds the command may wait for the device "
                                           "to connect (server default 3600)."),
         wait: bool = typer.Option(False, "--wait", help="Follow the command until the device answers (or the "
                                   "timeout), showing each state change; says when the device is offline."),
         timeout: float = typer.Option(60.0, "--timeout", min=0, help="With --wait: how long to wait, seconds."),
         as_json: bool = JSON_OPT) -> None:
    """Send a command; it is queued and delivered when the device is (or next comes) online."""
    args: dict[str, Any] = {}
    if command_name is CommandName.set_report_interval:
        if seconds is None:
            raise CliError("set_report_interval needs --seconds", EXIT_USAGE)
        args = {"seconds": seconds}
    elif command_name is CommandName.request_video:
        if not from_ or not to:
            raise CliError("request_video needs --from and --to", EXIT_USAGE)
        args = {"from": parse_when(from_, "--from"), "to": parse_when(to, "--to")}
    elif seconds is not None or from_ or to:
        raise CliError(f"{command_name.value} takes no --seconds/--from/--to", EXIT_USAGE)
    body: dict[str, Any] = {"command": command_name.value, "args": args}
    if ttl is not None:
        body["ttl_s"] = ttl
    imei = check_imei(imei)
    client = client_of(ctx)
    view = view_of(ctx)
    feed: Feed | None = None
    device: dict[str, Any] = {}
    if wait:  # opened before the command is sent, so that no state change is missed
        device = registered(client, [imei], "IMEI")[imei]
        feed = Feed(client.url, client.token, [imei], notify=lambda line: info(f"event feed: {line}"))
        try:
            feed.open()
        except CliError as exc:
            if exc.code == EXIT_AUTH:
                raise
            info(f"note: no event feed ({exc.message}); reading the command's state instead")
            feed = None
    with feed if feed is not None else contextlib.nullcontext():
        cmd = client.post(f"/api/v1/admin/devices/{seg(imei, 'IMEI')}/commands", body,
                          what=f"send {command_name.value} to {imei}")
        if wait and cmd.get("status") in FINAL:  # the device answered before the server did
            info(f"command {cmd.get('id')} {cmd.get('status')}")
        elif wait:
            info(f"command {cmd.get('id')} {cmd.get('status')}; waiting up to {timeout:g} s for the device")
            if cmd.get("status") == "queued" and not device.get("online"):
                info(f"device {imei} is offline: the command stays queued until it connects "
                     f"(it expires {view.long(cmd.get('expires_at')) if cmd.get('expires_at') else 'with its ttl'})")
            cmd = Follower(client, cmd, feed, view, lambda line: info(f"  {line}")).run(timeout)
    _finish(cmd, as_json, wait, timeout, view)


@command(app, example=["truckx commands status 5f0c8a52-7d3e-4b1e-9a51-0d8f1c2b3a4d",
                       "truckx commands status 5f0c8a52-7d3e-4b1e-9a51-0d8f1c2b3a4d --wait 30"])
def status(ctx: typer.Context, command_id: str = typer.Argument(..., metavar="ID"),
           wait: Optional[float] = typer.Option(None, "--wait", min=0, metavar="SECONDS",
                                                help="Wait up to this many seconds for a final state."),
           as_json: bool = JSON_OPT) -> None:
    """Show a command's status."""
    client = client_of(ctx)
    cmd = wait_final(client, command_id, wait) if wait else _get(client, command_id)
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd], view=view_of(ctx))
