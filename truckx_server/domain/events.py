"""The admin's live event feed: every event on the bus, for the feeds open on this process.

Each event is serialised once, whatever the number of feeds. A user holds at most ``max_feeds_per_user``
feeds on one process: opening one more closes that user's oldest feed with 4409 (replaced by a newer
connection), like a device's second WebSocket; refusing the new one instead would leave a user whose
old connections are half-open (a laptop that went to sleep) without a feed until they time out.

When a user's tokens are revoked (``vocab.USER_REVOKED`` on the bus, handled on every process), its feeds
here are closed with 4401.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from ..bus import Bus
from ..hub import Feed, Hub
from ..vocab import CLOSE_CREDENTIALS_CHANGED, CLOSE_REPLACED, USER_REVOKED

log = logging.getLogger("truckx.events")

#: receives each event with its JSON text (serialised once for every feed)
FeedCallback = Callable[[dict[str, Any], str], None]
MAX_FEEDS_PER_USER = 8


class EventService:
    def __init__(self, hub: Hub, bus: Bus, max_feeds_per_user: int = MAX_FEEDS_PER_USER) -> None:
        self.hub = hub
        self.bus = bus
        self.max_feeds_per_user = max_feeds_per_user
        self._callbacks: dict[Feed, FeedCallback] = {}
        self._stops: dict[Feed, Callable[[], None]] = {}
        #: each user's open feeds on this process, oldest first
        self._feeds_of: dict[str, list[Feed]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        bus.on_invalidate(self._invalidated)

    def _invalidated(self, kind: str, username: str) -> None:
        """Every token of ``username`` issued before was revoked: close its feeds here."""
        if kind != USER_REVOKED:
            return
        for feed in list(self._feeds_of.get(username, ())):
            self._stops[feed]()
            feed.close(CLOSE_CREDENTIALS_CHANGED, "token revoked; log in again")

    def open_feed(self, feed: Feed, user: str, on_event: FeedCallback) -> Callable[[], None]:
        """Start delivering events to ``feed`` of ``user``; returns the function that stops it. Past the
        user's bound, the user's oldest feed is stopped and closed (4409)."""
        feeds = self._feeds_of.setdefault(user, [])
        while len(feeds) >= self.max_feeds_per_user:
            oldest = feeds[0]
            self._stops[oldest]()
            oldest.close(CLOSE_REPLACED, "replaced by a newer event feed of the same user")
        feeds.append(feed)
        self._callbacks[feed] = on_event
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(self._fan_out)
        self.hub.add_feed(feed)

        def stop() -> None:
            if self._callbacks.pop(feed, None) is None:
                return
            self._stops.pop(feed, None)
            mine = self._feeds_of.get(user, [])
            if feed in mine:
                mine.remove(feed)
            if not mine:
                self._feeds_of.pop(user, None)
            self.hub.remove_feed(feed)
            if not self._callbacks and self._unsubscribe is not None:
                self._unsubscribe()  # nobody listens: publishers skip building events
                self._unsubscribe = None
        self._stops[feed] = stop
        return stop

    def _fan_out(self, event: dict[str, Any]) -> None:
        frame = json.dumps(event, separators=(",", ":"), default=str)
        for callback in list(self._callbacks.values()):
            try:
                callback(event, frame)
            except Exception:  # one broken feed must not starve the others
                log.exception("event feed failed")

    @property
    def feed_count(self) -> int:
        return len(self.hub.feeds)
