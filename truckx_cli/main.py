"""``truckx``: the admin CLI. One module per command group, combined here with ``add_typer``."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from . import accounts, alarms, audit, auth, command_queue, commands, devices, locations, users, videos, watch
from .client import CliError, Settings


class TruckxGroup(TyperGroup):
    """Turns every :class:`CliError` raised by any subcommand into one stderr line and its exit code."""

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
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Optional[str] = typer.Option(None, "--url", envvar="TRUCKX_URL", help="Server URL (overrides the saved one)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="TRUCKX_TOKEN", show_envvar=True,
                                        help="Admin token (overrides the saved one)."),
    timeout: float = typer.Option(30.0, "--timeout-s", min=1, help="HTTP timeout in seconds."),
) -> None:
    ctx.obj = Settings(url=url or None, token=token or None, timeout=timeout)


auth.register(app)
app.add_typer(devices.app, name="devices")
app.add_typer(alarms.app, name="alarms")
app.add_typer(locations.app, name="locations")
app.add_typer(videos.app, name="videos")
app.add_typer(commands.app, name="commands")
app.add_typer(users.app, name="users")
watch.register(app)
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
