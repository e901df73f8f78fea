"""The admin's live event feed: every event on the bus, for the feeds open on this process."""

from __future__ import annotations

from typing import Callable

from ..bus import Bus, Subscriber
from ..hub import Feed, Hub


class EventService:
    def __init__(self, hub: Hub, bus: Bus) -> None:
        self.hub = hub
        self.bus = bus

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
