"""Counters and mergeable latency histograms: the one ``measure()`` hook every device reports through.

Latencies go into log-spaced buckets (1 % wide), so histograms from several worker processes merge exactly
and percentiles stay within 1 % of the true value without keeping every sample.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
_MIN_MS = 0.001


class Histogram:
    __slots__ = ("buckets", "count", "total", "max")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value_ms: float) -> None:
        v = max(value_ms, _MIN_MS)
        self.buckets[int(math.log(v / _MIN_MS) / _LOG_GROWTH)] += 1
        self.count += 1
        self.total += value_ms
        if value_ms > self.max:
            self.max = value_ms

    def merge(self, other: "Histogram") -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in ms; None without samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100))
        seen = 0
        for idx in sorted(self.buckets):
            seen += self.buckets[idx]
            if seen >= rank:
                # the bucket's upper edge, capped by the largest sample
                return min(_MIN_MS * _GROWTH ** (idx + 1), self.max)
        return self.max

    def to_dict(self) -> dict[str, Any]:
        return {"b": dict(self.buckets), "n": self.count, "t": self.total, "m": self.max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Histogram":
        h = cls()
        h.buckets.update({int(k): v for k, v in d["b"].items()})
        h.count, h.total, h.max = d["n"], d["t"], d["m"]
        return h

    def summary(self) -> dict[str, float | None]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 2)
        return {"p50": r(self.percentile(50)), "p90": r(self.percentile(90)), "p99": r(self.percentile(99)),
                "max": r(self.max if self.count else None), "count": self.count}


COUNTERS = ("connects", "disconnects", "logins", "points_generated", "points_sent", "points_acked",
            "messages_sent", "alarms", "alarm_retries", "uploads", "upload_bytes", "upload_resumes", "clips_encoded",
            "commands", "command_results", "resets", "errors")


@dataclass
class Stats:
    """What one process measured. ``measure(name, ms)`` for latencies, ``incr(name)`` for counts."""

    counters: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, Histogram] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    connected: int = 0
    started: float = field(default_factory=time.monotonic)

    def measure(self, name: str, ms: float) -> None:
        h = self.latencies.get(name)
        if h is None:
            h = self.latencies[name] = Histogram()
        h.add(ms)

    def incr(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def error(self, kind: str) -> None:
        self.counters["errors"] += 1
        self.errors[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "errors": dict(self.errors), "connected": self.connected,
                "latencies": {k: h.to_dict() for k, h in self.latencies.items()}}

    @classmethod
    def merged(cls, snapshots: list[dict[str, Any]]) -> "Stats":
        out = cls()
        for s in snapshots:
            out.counters.update(s["counters"])
            out.errors.update(s["errors"])
            out.connected += s["connected"]
            for k, d in s["latencies"].items():
                out.latencies.setdefault(k, Histogram()).merge(Histogram.from_dict(d))
        return out

    def latency(self, name: str) -> Histogram:
        return self.latencies.get(name) or Histogram()
