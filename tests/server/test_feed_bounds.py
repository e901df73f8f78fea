"""The admin event feed's bounds: bytes (not only events) queued per subscriber, and feeds per user."""

from __future__ import annotations

import pytest

from tests.server.support import events_socket, make_user
from tests.server.test_admin_events import Feed
from tests.support import RunningServer, ServerFactory


async def test_a_feed_is_bounded_by_bytes_not_only_by_events(api: RunningServer) -> None:
    feed = Feed(await events_socket(api, await api.admin_headers()))
    await feed.ready()
    big = "x" * 900_000
    for i in range(12):  # 12 events, far below 1000, but 10.8 MB: published before any writer runs
        api.probe.publish("alarm", {"imei": "350000000000000", "alarm": {"id": str(i), "details": {"blob": big}}})
    with pytest.raises(ConnectionError, match="4429"):
        await feed.wait(lambda e: False, timeout=30)
    received = [e for e in feed.events if e["type"] == "alarm"]
    assert len(received) <= 5, len(received)  # 4 MiB queued at most, plus the frame being written
    feed.conn.close()
    assert api.probe.feed_count == 0 and not api.probe.events_active


async def test_a_user_holds_a_bounded_number_of_feeds_the_newest_wins(server_factory: ServerFactory) -> None:
    server = await server_factory(max_feeds_per_user=2)
    admin = await server.admin_headers()
    viewer = await make_user(server, "watcher", "viewer")
    first, second = Feed(await events_socket(server, admin)), Feed(await events_socket(server, admin))
    watcher = Feed(await events_socket(server, viewer))
    for feed in (first, second, watcher):
        await feed.ready()
    assert server.probe.feed_count == 3
    third = Feed(await events_socket(server, admin))
    await third.ready()
    # the admin's oldest feed is closed as replaced; the viewer's is not touched
    with pytest.raises(ConnectionError, match="4409"):
        await first.wait(lambda e: False)
    assert server.probe.feed_count == 3
    server.probe.publish("video", {"imei": "350000000000000", "video": {"name": "a.mp4"}})
    for feed in (second, third, watcher):
        await feed.wait(lambda e: e["type"] == "video")
    newer = []
    for _ in range(5):  # many more: still two for the admin
        newer.append(Feed(await events_socket(server, admin)))
        await newer[-1].ready()
    assert server.probe.feed_count == 3
    with pytest.raises(ConnectionError, match="4409"):
        await third.wait(lambda e: e["type"] == "never")
    for feed in (first, second, third, watcher, *newer):
        feed.conn.close()
