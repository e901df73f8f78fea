"""``truckx``: the admin CLI. One module per command group, combined here with ``add_typer``."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from typing import Any, Optional

import typer

from . import (accounts, alarms, audit, auth, command_queue, commands, devices, geofences, locations, nodes, storage,
               users, videos, watch, webhooks)
from .client import CliError, Settings, check_profile_name
from .common import PROFILE_HELP, RELATIVE_HELP, TZ_HELP, Group

EXIT_CODES = """Exit codes:
  0  success
  1  failure: server error, conflict, a command that failed, a declined confirmation
  2  usage: a bad option or value, an empty time window, an unknown file extension
  3  not logged in, or not allowed (role)
  4  not found: an unregistered IMEI, an unknown alarm, command or video
  5  server unreachable or unavailable
130  interrupted (Ctrl-C)"""

ROOT_EPILOG = f"""Examples:
  truckx login --profile prod https://fleet.example.com -u admin
  truckx devices list --online
  truckx alarms list --since 2h --status active
  truckx watch --type alarm,command_status
  truckx locations trips 356938035643809 --since 1d

{EXIT_CODES}"""


class TruckxGroup(Group):
    """The root group: turns every :class:`CliError` raised by any subcommand into one stderr message and
    its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            typer.echo(f"truckx: error: {exc.message}", err=True)
            raise typer.Exit(exc.code) from None
        except KeyboardInterrupt:
            typer.echo("truckx: interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise  # exits, aborts and usage errors: Typer reports them itself
            if os.environ.get("TRUCKX_DEBUG"):
                raise
            typer.echo(f"truckx: internal error: {type(exc).__name__}: {exc} (set TRUCKX_DEBUG=1 for a traceback)",
                       err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="truckx",
    cls=TruckxGroup,
    help="Admin CLI for a truckx server: devices, alarms, locations, videos, commands, users, live events.",
    epilog=ROOT_EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version() -> str:
    try:
        return metadata.version("truckx")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"truckx {version()}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    url: Optional[str] = typer.Option(None, "--url", envvar="TRUCKX_URL", metavar="URL",
                                      help="Server URL (overrides the profile's)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="TRUCKX_TOKEN", show_envvar=True, metavar="TOKEN",
                                        help="Admin token (overrides the profile's)."),
    profile: Optional[str] = typer.Option(None, "--profile", envvar="TRUCKX_PROFILE", metavar="NAME",
                                          help=PROFILE_HELP),
    tz: Optional[str] = typer.Option(None, "--tz", envvar="TRUCKX_TZ", metavar="ZONE", help=TZ_HELP),
    relative: bool = typer.Option(False, "--relative", help=RELATIVE_HELP),
    timeout: float = typer.Option(30.0, "--timeout-s", min=1, help="HTTP timeout in seconds."),
    _version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                  help="Print the version and exit."),
) -> None:
    try:
        name = check_profile_name(profile) if profile else None
    except CliError as exc:
        raise typer.BadParameter(exc.message, param_hint="--profile") from None
    ctx.obj = Settings(url=url or None, token=token or None, timeout=timeout, profile=name, tz=tz or None,
                       relative=relative)


auth.register(app)
app.add_typer(devices.app, name="devices")
app.add_typer(alarms.app, name="alarms")
app.add_typer(locations.app, name="locations")
app.add_typer(videos.app, name="videos")
app.add_typer(commands.app, name="commands")
app.add_typer(users.app, name="users")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(geofences.app, name="geofences")
app.add_typer(auth.profiles_app, name="profiles")
watch.register(app)
storage.register(app)
nodes.register(app)
accounts.register(users.app)
command_queue.register(commands.app)
audit.register(app)


def main() -> None:
    try:
        app(prog_name="truckx")
    except CliError as exc:  # raised outside a command (should not happen), still one line
        print(f"truckx: error: {exc.message}", file=sys.stderr)
        sys.exit(exc.code)


if __name__ == "__main__":
    main()
