"""One backoff policy for every retry loop: the SQL store, the MongoDB store and the ingest writer.

``backoff(first, cap)`` yields the delays to sleep between attempts: ``first``, doubling up to ``cap``,
with full jitter off (the callers are a handful of store clients per process, not a fleet, so there is no
herd to spread; devices jitter their own reconnects).
"""

from __future__ import annotations

from typing import Iterator


def backoff(first: float = 0.1, cap: float = 2.0, factor: float = 2.0) -> Iterator[float]:
    """``first, first*factor, ...`` capped at ``cap``, forever."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)
