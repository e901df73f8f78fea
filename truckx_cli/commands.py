"""``truckx commands``: send a command to a device (optionally waiting for its result), check a status."""

from __future__ import annotations

import enum
import math
import time
from typing import Any, Optional

import typer

from .client import EXIT_ERROR, EXIT_USAGE, Client, CliError, client_of, seg
from .output import JSON_OPT, info, parse_when, print_object

app = typer.Typer(help="Send commands to devices.", no_args_is_help=True)

FINAL = ("succeeded", "failed", "expired", "cancelled")
FIELDS = ["id", "imei", "command", "args", "status", "created_by", "created_at", "sent_at", "finished_at",
          "expires_at", "detail"]


class CommandName(str, enum.Enum):
    reset = "reset"
    set_report_interval = "set_report_interval"
    request_video = "request_video"


def wait_final(client: Client, command_id: str, timeout_s: float) -> dict[str, Any]:
    """Hold ``GET /commands/{id}?wait=`` (at most 60 s a call) until a final state or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        wait = max(0, min(60, math.ceil(remaining)))
        cmd = client.get(f"/api/v1/admin/commands/{seg(command_id, 'ID')}", params={"wait": wait},
                         timeout=wait + 15, what=f"command {command_id}")
        if cmd.get("status") in FINAL or remaining <= 0:
            return cmd
        if wait == 0:
            return cmd


def _finish(cmd: dict[str, Any], as_json: bool, waited: bool, timeout_s: float) -> None:
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd])
    status = cmd.get("status")
    if status in ("failed", "expired", "cancelled"):
        raise CliError(f"command {cmd.get('id')} {status}" + (f": {cmd['detail']}" if cmd.get("detail") else ""),
                       EXIT_ERROR)
    if waited and status not in FINAL:
        raise CliError(f"command {cmd.get('id')} is still {status} after {timeout_s:g} s "
                       f"(check later: truckx commands status {cmd.get('id')})", EXIT_ERROR)


@app.command()
def send(ctx: typer.Context,
         imei: str = typer.Argument(..., help="The device."),
         command: CommandName = typer.Argument(..., help="reset, set_report_interval or request_video."),
         seconds: Optional[int] = typer.Option(None, "--seconds", min=1, max=86400,
                                               help="set_report_interval: the interval in seconds."),
         from_: Optional[str] = typer.Option(None, "--from", help="request_video: window start (RFC 3339 or 10m)."),
         to: Optional[str] = typer.Option(None, "--to", help="request_video: window end (RFC 3339, relative, now)."),
         ttl: Optional[int] = typer.Option(None, "--ttl", min=1, help="Seconds the command may wait for the device "
                                           "to connect (server default 3600)."),
         wait: bool = typer.Option(False, "--wait", help="Wait until the device answers (or the timeout)."),
         timeout: float = typer.Option(60.0, "--timeout", min=0, help="With --wait: how long to wait, seconds."),
         as_json: bool = JSON_OPT) -> None:
    """Send a command; it is queued and delivered when the device is (or next comes) online."""
    args: dict[str, Any] = {}
    if command is CommandName.set_report_interval:
        if seconds is None:
            raise CliError("set_report_interval needs --seconds", EXIT_USAGE)
        args = {"seconds": seconds}
    elif command is CommandName.request_video:
        if not from_ or not to:
            raise CliError("request_video needs --from and --to", EXIT_USAGE)
        args = {"from": parse_when(from_, "--from"), "to": parse_when(to, "--to")}
    elif seconds is not None or from_ or to:
        raise CliError(f"{command.value} takes no --seconds/--from/--to", EXIT_USAGE)
    body: dict[str, Any] = {"command": command.value, "args": args}
    if ttl is not None:
        body["ttl_s"] = ttl
    client = client_of(ctx)
    cmd = client.post(f"/api/v1/admin/devices/{seg(imei, 'IMEI')}/commands", body, what=f"send {command.value} to {imei}")
    if wait and cmd.get("status") not in FINAL:
        if not as_json:
            info(f"command {cmd.get('id')} {cmd.get('status')}; waiting up to {timeout:g} s for the device")
        cmd = wait_final(client, cmd["id"], timeout)
    _finish(cmd, as_json, wait, timeout)


@app.command()
def status(ctx: typer.Context, command_id: str = typer.Argument(..., metavar="ID"),
           wait: Optional[float] = typer.Option(None, "--wait", min=0, help="Wait up to this many seconds "
                                                "for a final state."),
           as_json: bool = JSON_OPT) -> None:
    """Show a command's status."""
    client = client_of(ctx)
    if wait:
        cmd = wait_final(client, command_id, wait)
    else:
        cmd = client.get(f"/api/v1/admin/commands/{seg(command_id, 'ID')}", what=f"command {command_id}")
    print_object(cmd, as_json, None if as_json else [f for f in FIELDS if f in cmd])
