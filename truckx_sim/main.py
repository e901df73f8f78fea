"""``truckx-sim``: a fleet of simulated dashcams against a truckx server, bounded in time and count."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .config import SimConfig
from .provision import ProvisionError
from .video import clip_spec

MAX_DEVICES = 100_000
MAX_DURATION_S = 24 * 3600


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckx-sim", description="Simulate a fleet of truck dashcams against a truckx server.")
    p.add_argument("--url", default=os.environ.get("TRUCKX_URL", "http://127.0.0.1:8888"), help="server base URL [env TRUCKX_URL]")
    p.add_argument("--devices", type=int, default=10, help="number of simulated devices")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to drive; then drain and stop")
    p.add_argument("--ramp", type=float, default=0.0, metavar="PER_S", help="devices started per second (0: all at once)")
    p.add_argument("--report-interval", type=float, default=1.0, metavar="S", help="seconds between location reports")
    p.add_argument("--alarm-rate", type=float, default=0.0, metavar="PER_H", help="alarms per device per hour")
    p.add_argument("--video", choices=("mp4", "random", "none"), default="mp4",
                   help="what alarms upload: a real H.264 clip (made once with PyAV and cached), random bytes "
                        "(--video-size), or nothing")
    p.add_argument("--video-size", type=int, default=256 * 1024, metavar="BYTES",
                   help="bytes per --video random upload (0: no uploads at all)")
    p.add_argument("--video-seconds", type=float, default=4.0, metavar="S", help="length of each clip")
    p.add_argument("--video-resolution", default="480x270", metavar="WxH", help="size of each clip")
    p.add_argument("--video-fps", type=int, default=15, help="frame rate of each clip")
    p.add_argument("--video-labels", choices=("auto", "device", "pool"), default="auto",
                   help="burn each device's IMEI into its own clip, or share a pool of 8 clips "
                        "(auto: device up to 20 devices)")
    p.add_argument("--cache-dir", help="cache for clips and device credentials "
                                       "(default: $XDG_CACHE_HOME/truckx-sim or ~/.cache/truckx-sim)")
    p.add_argument("--upload-interrupt-rate", type=float, default=0.2, help="share of uploads interrupted and resumed")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="processes to spread the devices over")
    p.add_argument("--source-addresses", type=int, default=0, metavar="N",
                   help="127.0.0.x source addresses to use (0: one per 12,000 devices)")
    p.add_argument("--provision", action="store_true", help="register missing devices through the admin API")
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-password-file", type=Path, help="file holding the admin password [else env TRUCKX_ADMIN_PASSWORD]")
    p.add_argument("--secrets-file", help="device credentials cache (default: ~/.cache/truckx-sim/devices-<url>.json)")
    p.add_argument("--reset-delay", type=float, default=3.0, help="seconds a device stays down after a reset command")
    p.add_argument("--relogin", action="store_true", help="log in again before every reconnect")
    p.add_argument("--drain-timeout", type=float, default=15.0, help="seconds to wait for outstanding acks at the end")
    p.add_argument("--seed", type=int, help="random seed (routes, alarms)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout "
                                                       "(else as a table on stdout)")
    p.add_argument("--no-dashboard", action="store_true", help="no live view (on stderr, when it is a terminal)")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    if not 1 <= args.devices <= MAX_DEVICES:
        raise SystemExit(f"truckx-sim: --devices must be 1..{MAX_DEVICES}")
    if not 0 < args.duration <= MAX_DURATION_S:
        raise SystemExit(f"truckx-sim: --duration must be in (0, {MAX_DURATION_S}]")
    if args.report_interval <= 0 or args.workers < 1 or args.alarm_rate < 0 or args.video_size < 0:
        raise SystemExit("truckx-sim: --report-interval must be > 0, --workers >= 1, rates and sizes >= 0")
    try:
        width, height = (int(x) for x in args.video_resolution.lower().split("x"))
    except ValueError:
        raise SystemExit("truckx-sim: --video-resolution must be WIDTHxHEIGHT, like 480x270") from None
    password = None
    if args.admin_password_file:
        password = args.admin_password_file.read_text().strip()
    elif os.environ.get("TRUCKX_ADMIN_PASSWORD"):
        password = os.environ["TRUCKX_ADMIN_PASSWORD"]
    config = SimConfig(
        url=args.url, devices=args.devices, duration_s=args.duration, ramp_per_s=args.ramp,
        report_interval_s=args.report_interval, alarm_rate_per_h=args.alarm_rate, video=args.video,
        video_size=args.video_size, video_width=width, video_height=height, video_fps=args.video_fps,
        video_seconds=args.video_seconds, video_labels=args.video_labels, cache_dir=args.cache_dir,
        upload_interrupt_rate=args.upload_interrupt_rate, workers=args.workers,
        source_addresses=args.source_addresses, provision=args.provision, admin_user=args.admin_user,
        admin_password=password, secrets_file=args.secrets_file, reset_delay_s=args.reset_delay,
        relogin_on_reconnect=args.relogin, drain_timeout_s=args.drain_timeout, seed=args.seed)
    if config.video == "mp4":
        try:  # the clip's limits, checked now rather than at the first alarm
            clip_spec(config, "0" * 15)
        except ValueError as exc:
            raise SystemExit(f"truckx-sim: --video-*: {exc}") from None
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    from rich.console import Console

    from .dashboard import Dashboard, summary_table
    from .env import arun

    console = Console(stderr=True)  # progress and the live view: stderr, so stdout is only the summary
    show = not args.no_dashboard and console.is_terminal
    console.print(f"truckx-sim: {config.devices} devices against {config.http_url} for {config.duration_s:g} s"
                  + (f", alarms {config.alarm_rate_per_h:g}/h each, video {config.video}"
                     if config.alarm_rate_per_h else ""), highlight=False, markup=False)

    async def go() -> dict:
        if show:
            with Dashboard(config.devices, config.duration_s, console) as dash:
                summary = await arun(config, on_tick=dash.update)
        else:
            summary = await arun(config)
        return summary.to_json()

    try:
        result = asyncio.run(go())
    except ProvisionError as exc:
        print(f"truckx-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(result), flush=True)
    else:  # `truckx-sim ... > sim.log` keeps the summary
        Console(file=sys.stdout, highlight=False).print(summary_table(result))
    return 0 if result["errors"] == 0 or result["points_unacked"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
