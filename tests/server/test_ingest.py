"""Unit tests of the group-commit batcher's logic, with an in-memory store."""

from __future__ import annotations

import asyncio
import datetime as dt

from truckx_server.ingest import FrameBudget, LocationBatcher
from truckx_server.models import LocationPoint

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


class SlowStore:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.points: list[LocationPoint] = []
        self.batches: list[int] = []

    async def write(self, points) -> None:
        await asyncio.sleep(self.delay)
        self.points.extend(points)
        self.batches.append(len(points))


class Session:
    imei = "490154203237518"
    is_open = True

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_nowait(self, message: dict) -> None:
        self.sent.append(message)


def pts(n: int, start: int = 0) -> list[LocationPoint]:
    return [LocationPoint("490154203237518", T0 + dt.timedelta(seconds=start + i), 1.0, 2.0) for i in range(n)]


async def test_flush_waits_for_the_write_in_flight() -> None:
    store = SlowStore(0.3)
    batcher = LocationBatcher(store, max_points=100, interval_ms=1)
    batcher.start()
    session = Session()
    await batcher.submit(session, 1, pts(1))
    await asyncio.sleep(0.05)  # the writer has taken the batch and is writing it
    assert await batcher.flush(5)
    assert len(store.points) == 1 and session.sent == [{"type": "ack", "seq": 1}]
    await batcher.close()


async def test_batches_respect_max_points_and_ack_cumulatively() -> None:
    store = SlowStore(0.0)
    batcher = LocationBatcher(store, max_points=10, interval_ms=20)
    batcher.start()
    session = Session()
    for seq in range(1, 8):
        await batcher.submit(session, seq, pts(3, seq * 10))
    await batcher.flush(5)
    assert sum(store.batches) == 21 and max(store.batches) <= 10
    acks = [m["seq"] for m in session.sent]
    assert acks == sorted(acks) and acks[-1] == 7
    await batcher.close()


async def test_message_with_no_valid_points_is_still_acked_in_order() -> None:
    store = SlowStore(0.0)
    batcher = LocationBatcher(store, max_points=10, interval_ms=5)
    batcher.start()
    session = Session()
    await batcher.submit(session, 1, [])
    await batcher.flush(5)
    assert session.sent == [{"type": "ack", "seq": 1}]
    await batcher.close()


async def test_close_with_a_dead_store_gives_up_without_acking() -> None:
    class Dead:
        async def write(self, points) -> None:
            raise ConnectionError("down")

    batcher = LocationBatcher(Dead(), max_points=10, interval_ms=1)
    batcher.start()
    session = Session()
    await batcher.submit(session, 1, pts(2))
    assert not await batcher.close(timeout_s=0.3)
    assert session.sent == [] and batcher.queued_points == 2


async def test_frame_budget_defers_frames_past_the_turn_to_the_next_turn() -> None:
    budget = FrameBudget(per_turn=3)
    assert [budget.spend() for _ in range(3)] == [None, None, None]
    later = budget.spend()
    assert later is not None and not later.done()
    assert budget.spend() is later  # one shared future per turn
    await asyncio.sleep(0)  # the next turn of the loop
    assert later.done()
    assert [budget.spend() for _ in range(3)] == [None, None, None]  # a fresh allowance
    assert budget.spend() is not None
