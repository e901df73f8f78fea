"""GroupCommit (storage/sql/engine.py): batching of concurrent writes, results per item, failures."""

from __future__ import annotations

import asyncio

import pytest

from truckx_server.storage.sql.engine import GroupCommit


async def test_calls_made_while_a_batch_is_written_form_the_next_batch() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[object]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_items=2)
    first = asyncio.ensure_future(group.submit(0))
    await asyncio.sleep(0)  # the writer has taken item 0 alone
    rest = [asyncio.ensure_future(group.submit(i)) for i in (1, 2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert batches == [[0], [1, 2], [3, 4]]  # at most max_items each, in order
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError) and results[4] == 40


async def test_a_failed_batch_fails_its_items_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(items: list[str]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("store down")
        return [s.upper() for s in items]

    group: GroupCommit[str, str] = GroupCommit(run)
    with pytest.raises(ConnectionError):
        await group.submit("a")
    assert await group.submit("b") == "B"


async def test_cancelling_the_writer_leaves_no_caller_waiting() -> None:
    async def run(items: list[int]) -> list[object]:
        await asyncio.sleep(3600)
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(run, max_items=1)
    waiting = [asyncio.ensure_future(group.submit(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert group._writer is not None
    group._writer.cancel()
    done, pending = await asyncio.wait(waiting, timeout=5)
    assert not pending and all(f.cancelled() for f in done)
