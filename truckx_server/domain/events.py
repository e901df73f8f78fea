"""The admin's live event feed: every event on the bus, for the feeds open on this process. When a user's
tokens are revoked (``vocab.USER_REVOKED`` on the bus, on every process), its feeds here are closed with
4401."""

from __future__ import annotations

from typing import Callable

from ..bus import Bus, Subscriber
from ..hub import Feed, Hub
from ..vocab import CLOSE_CREDENTIALS_CHANGED, USER_REVOKED


class EventService:
    def __init__(self, hub: Hub, bus: Bus) -> None:
        self.hub = hub
        self.bus = bus
        bus.on_invalidate(self._invalidated)

    def _invalidated(self, kind: str, username: str) -> None:
        if kind == USER_REVOKED:
            self.hub.close_feeds_of(username, CLOSE_CREDENTIALS_CHANGED, "token revoked; log in again")

    def open_feed(self, feed: Feed, on_event: Subscriber) -> Callable[[], None]:
        """Start delivering events to ``feed``; returns the function that stops it."""
        unsubscribe = self.bus.subscribe(on_event)
        self.hub.add_feed(feed)

        def stop() -> None:
            unsubscribe()
            self.hub.remove_feed(feed)
        return stop

    @property
    def feed_count(self) -> int:
        return len(self.hub.feeds)
