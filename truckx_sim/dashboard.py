"""The Rich live view while the fleet runs, and the end-of-run summary table."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .stats import Stats


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


class Dashboard:
    def __init__(self, devices: int, duration_s: float, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.devices = devices
        self.duration_s = duration_s
        self.started = time.monotonic()
        self._last: tuple[float, int] = (self.started, 0)
        self._rate = 0.0
        self.live = Live(self._table(Stats(), {}), console=self.console, refresh_per_second=2, transient=False)

    def __enter__(self) -> "Dashboard":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, stats: Stats, gauges: dict[str, Any]) -> None:
        now = time.monotonic()
        acked = stats.counters["points_acked"]
        t0, a0 = self._last
        if now - t0 >= 1.0:
            self._rate = (acked - a0) / (now - t0)
            self._last = (now, acked)
        self.live.update(self._table(stats, gauges))

    def _table(self, stats: Stats, gauges: dict[str, Any]) -> Table:
        c = stats.counters
        ack = stats.latency("ack")
        elapsed = time.monotonic() - self.started
        t = Table(title=f"truckx-sim  {elapsed:5.0f}s / {self.duration_s:.0f}s", show_header=True)
        t.add_column("metric")
        t.add_column("value", justify="right")
        rows = [
            ("connected", f"{stats.connected} / {self.devices}"),
            ("points/s (acked)", f"{self._rate:,.0f}"),
            ("points generated / acked", f"{c['points_generated']:,} / {c['points_acked']:,}"),
            ("unacknowledged now", f"{gauges.get('unacked', 0):,}"),
            ("ack latency p50 / p99 ms", f"{_fmt(ack.percentile(50))} / {_fmt(ack.percentile(99))}"),
            ("alarms", f"{c['alarms']:,}"),
            ("uploads (resumed)", f"{c['uploads']:,} ({c['upload_resumes']:,})"),
            ("commands / results", f"{c['commands']:,} / {c['command_results']:,}"),
            ("reconnects", f"{max(0, c['connects'] - self.devices):,}"),
            ("errors", f"{c['errors']:,}" + (f"  ({', '.join(f'{k}={v}' for k, v in stats.errors.most_common(3))})"
                                              if stats.errors else "")),
        ]
        for k, v in rows:
            t.add_row(k, v)
        return t


def summary_table(summary: dict[str, Any]) -> Table:
    t = Table(title="truckx-sim summary")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("devices", "connected", "duration_s", "points_generated", "points_sent", "points_acked",
                "points_unacked", "points_per_s", "alarms", "uploads", "upload_resumes", "clips_encoded", "commands",
                "resets", "errors"):
        t.add_row(key, f"{summary[key]:,}" if isinstance(summary[key], int) else str(summary[key]))
    ack = summary["ack_latency_ms"]
    t.add_row("ack latency p50 / p99 ms", f"{_fmt(ack['p50'])} / {_fmt(ack['p99'])}")
    if summary["error_kinds"]:
        t.add_row("error kinds", ", ".join(f"{k}={v}" for k, v in sorted(summary["error_kinds"].items())))
    return t
