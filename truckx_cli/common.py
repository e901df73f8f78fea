"""What every ``truckx`` command shares: ``--profile`` (and ``--tz`` / ``--relative`` where times are shown)
accepted after the command name too, an example in its help, and the time view built from them."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .client import Settings, check_profile_name, settings_of
from .output import TimeView, zone

PROFILE_HELP = "Use this saved profile (default: TRUCKX_PROFILE, else the default profile)."
TZ_HELP = "Show times in this zone: an IANA name (Europe/Madrid), UTC or local (the default)."
RELATIVE_HELP = 'Show times relative to now ("3 min ago").'

_COMMON = {
    "profile_opt": (Optional[str], typer.Option(None, "--profile", metavar="NAME", help=PROFILE_HELP)),
    "tz_opt": (Optional[str], typer.Option(None, "--tz", metavar="ZONE", help=TZ_HELP)),
    "relative_opt": (bool, typer.Option(False, "--relative", help=RELATIVE_HELP)),
}


def _flags_as_flags(params: Sequence[Any]) -> None:
    for param in params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""  # Typer's help would show <bool>


class Group(TyperGroup):
    """A command group whose help pages (its own and its commands') show boolean flags as flags, without a
    ``<bool>`` type (help options included)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _flags_as_flags(params)
        return params

    def get_command(self, ctx: Any, name: str) -> Any:
        cmd = super().get_command(ctx, name)
        if cmd is not None and not isinstance(cmd, Group):
            _flags_as_flags(cmd.get_params(ctx))
        return cmd


def apply(settings: Settings, profile: str | None = None, tz: str | None = None, relative: bool = False) -> None:
    """Options given after a command name win over the same given before it (or by the environment)."""
    if profile:
        settings.profile = check_profile_name(profile)
    if tz:
        settings.tz = tz
    if relative:
        settings.relative = True


def view_of(ctx: typer.Context) -> TimeView:
    settings = settings_of(ctx)
    return TimeView(tz=zone(settings.tz), relative=settings.relative)


def epilog(examples: str | Sequence[str]) -> str:
    lines = [examples] if isinstance(examples, str) else list(examples)
    return "\n".join(["Example" + ("s" if len(lines) > 1 else "") + ":"] + [escape(x) for x in lines])


def command(app: typer.Typer, name: str | None = None, *, example: str | Sequence[str], times: bool = True,
            **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@app.command()`` for a function whose first parameter is ``ctx: typer.Context``, adding ``--profile``
    (and, with ``times``, ``--tz`` and ``--relative``) and an example to its help."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        if "ctx" not in sig.parameters:
            raise TypeError(f"{func.__name__} needs a ctx: typer.Context parameter")
        names = ["profile_opt"] + (["tz_opt", "relative_opt"] if times else [])
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_COMMON[n][1],
                                   annotation=_COMMON[n][0]) for n in names]
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            common = {n: kw.pop(n, None) for n in names}
            apply(settings_of(kw["ctx"]), common.get("profile_opt"), common.get("tz_opt"),
                  bool(common.get("relative_opt")))
            return func(*args, **kw)

        wrapper.__signature__ = sig.replace(parameters=positional + keyword + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in positional + keyword + extra
                                   if p.annotation is not inspect.Parameter.empty}
        del wrapper.__wrapped__  # typer reads the signature above, not the wrapped function's
        app.command(name, epilog=epilog(example), **kwargs)(wrapper)
        return func

    return decorate
