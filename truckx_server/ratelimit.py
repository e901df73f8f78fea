"""A small in-process token bucket per key (admin logins per username and per address)."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, per_period: int, period_s: float, max_keys: int = 100_000) -> None:
        self.capacity = float(per_period)
        self.rate = per_period / period_s
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * self.rate < self.capacity}
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True
