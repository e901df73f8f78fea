"""The location hot path: group commit with cumulative acks.

Each WebSocket message is validated by the handler and submitted here with its ``seq``. One writer task
takes whole messages off the queue (up to ``max_points`` points, or whatever arrived within
``interval_ms``), writes them to the location store in one call, and only then sends each connection an
``ack`` with the highest ``seq`` that batch made durable. If the store fails, the same batch is retried
with backoff and nobody is acknowledged meanwhile; devices keep their buffers. The queue is bounded in
points: when it is full, :meth:`LocationBatcher.submit` waits, and since Tornado reads a connection's
next frame only after ``on_message`` returns, full means sockets stop being read.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

from .models import LocationPoint
from .storage.retry import backoff

log = logging.getLogger("truckx.ingest")


class Acker(Protocol):
    imei: str

    @property
    def is_open(self) -> bool: ...

    def send_nowait(self, message: dict[str, Any]) -> None:
        """Queue a frame for writing; never raises for a closed connection."""


class Writer(Protocol):
    async def write(self, points: Sequence[LocationPoint]) -> None: ...


@dataclass(slots=True)
class _Entry:
    session: Acker
    seq: int
    points: Sequence[LocationPoint]


class FrameBudget:
    """How many device frames the event loop handles in one turn, across all connections.

    Tornado reads a connection's buffered frames one after the other without returning to the loop
    (until 256 KiB), so after a group commit acks 50 busy devices, their next windows (1,000 frames,
    ~30 ms) are handled in one or two turns, and every other request waits behind them: that was the
    /healthz p99 under ingest. Once ``per_turn`` frames have been handled in the current turn,
    :meth:`spend` returns a future that resolves on the next turn; the device handler returns it to
    Tornado, which then reads that connection's next frame only when it resolves. Frames are only
    delayed, never dropped or reordered (each connection keeps its order); one shared future per turn.
    """

    def __init__(self, per_turn: int = 100) -> None:
        self.per_turn = per_turn
        self._left = per_turn
        self._armed = False
        self._next_turn: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def spend(self) -> "asyncio.Future[None] | None":
        """Count one frame; None while this turn has room, else a future for the next turn."""
        if not self._armed:
            self._armed = True
            self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._new_turn)
        self._left -= 1
        if self._left >= 0:
            return None
        if self._next_turn is None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # the loop that was to start the next turn is gone (tests)
                self._new_turn()
                return self.spend()
            self._next_turn = loop.create_future()
        return self._next_turn

    def _new_turn(self) -> None:
        self._armed = False
        self._left = self.per_turn
        waiting, self._next_turn = self._next_turn, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)


class LocationBatcher:
    def __init__(self, store: Writer, *, max_points: int = 2000, interval_ms: int = 10,
                 queue_points: int = 50_000, write_timeout_s: float = 10.0,
                 on_flushed: Callable[[Sequence[LocationPoint], float], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.max_points = max_points
        self.interval = interval_ms / 1000
        self.queue_points = queue_points
        self.write_timeout_s = write_timeout_s
        self.on_flushed = on_flushed
        self.on_error = on_error
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued_points = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: set by flush(): write what is queued without waiting out the interval
        self._urgent = False
        #: a batch taken off the queue whose write has not finished
        self._inflight = False
        #: True while the store is failing; /readyz reports it
        self.degraded = False

    @property
    def queued_points(self) -> int:
        return self._queued_points

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="location-batcher")

    def offer(self, session: Acker, seq: int, points: Sequence[LocationPoint]) -> Awaitable[None] | None:
        """Queue a message's points without waiting when there is room (the hot path: no task, no
        await) and return None; when the queue is full, return an awaitable that queues them once
        there is room. The connection gets ``ack seq`` once they are durable."""
        n = len(points)
        if self._queued_points + n > self.queue_points and self._queued_points > 0:
            return self.submit(session, seq, points)
        self._enqueue(session, seq, points)
        return None

    async def submit(self, session: Acker, seq: int, points: Sequence[LocationPoint]) -> None:
        """Queue a message's points, waiting (holding back the socket) while the queue is full."""
        n = len(points)
        if self._queued_points + n > self.queue_points and self._queued_points > 0:
            async with self._space:
                await self._space.wait_for(
                    lambda: self._queued_points == 0 or self._queued_points + n <= self.queue_points)
        self._enqueue(session, seq, points)

    def _enqueue(self, session: Acker, seq: int, points: Sequence[LocationPoint]) -> None:
        self._queue.append(_Entry(session, seq, points))
        self._queued_points += len(points)
        if self._queued_points >= self.max_points or len(self._queue) == 1:
            self._wake.set()  # a full batch, or the first entry of one (starts its interval)

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        count = 0
        while self._queue:
            n = len(self._queue[0].points)
            if batch and count + n > self.max_points:
                break
            batch.append(self._queue.popleft())
            count += n
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # a batch is open: flush when it is full or its interval has passed
            deadline = time.monotonic() + self.interval
            while self._queued_points < self.max_points and not (self._stopping or self._urgent):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            await self._flush_one()

    async def _flush_one(self) -> None:
        self._inflight = True
        try:
            await self._write_batch(self._take())
        finally:
            self._inflight = False

    async def _write_batch(self, batch: list[_Entry]) -> None:
        points = [p for e in batch for p in e.points]
        delays = backoff(0.05, 2.0)
        while True:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    await self.store.write(points)
                break
            except asyncio.CancelledError:
                # put the batch back so a later flush can still write it
                self._queue.extendleft(reversed(batch))
                raise
            except Exception as exc:
                self.degraded = True
                if self.on_error:
                    self.on_error(exc)
                delay = next(delays)
                log.warning("location write of %d points failed (%s); retrying in %.2fs",
                            len(points), type(exc).__name__, delay)
                await asyncio.sleep(delay)
        self.degraded = False
        elapsed = time.perf_counter() - started
        acks: dict[int, tuple[Acker, int]] = {}
        for entry in batch:
            acks[id(entry.session)] = (entry.session, entry.seq)
        for session, seq in acks.values():
            if session.is_open:
                session.send_nowait({"type": "ack", "seq": seq})
        self._queued_points -= len(points)
        async with self._space:
            self._space.notify_all()
        if self.on_flushed:
            self.on_flushed(points, elapsed)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Write everything queued now. Returns False if it did not finish within ``timeout_s``."""
        async def drain() -> None:
            while self._queue or self._inflight:
                if self._task is not None and not self._task.done():
                    self._wake.set()
                    await asyncio.sleep(0.005)
                else:
                    await self._flush_one()
        self._urgent = True
        try:
            await asyncio.wait_for(drain(), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._urgent = False

    async def close(self, timeout_s: float = 10.0) -> bool:
        """Flush what is queued (bounded by ``timeout_s``) and stop the writer task."""
        self._stopping = True
        self._wake.set()
        done = await self.flush(timeout_s)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if not done:
            log.warning("shutdown: %d location points were not written (their devices were not acked "
                        "and will resend them)", self._queued_points)
        return done
