"""Prometheus metrics, one registry per running server (so several servers can share a process)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ws_connections = Gauge("truckx_ws_connections", "Open device WebSocket sessions", registry=r)
        self.ws_messages = Counter("truckx_ws_messages", "Device WebSocket messages received", ["type"], registry=r)
        self.points_stored = Counter("truckx_location_points_stored", "Location points written (before dedupe)", registry=r)
        self.acks = Counter("truckx_acks_sent", "Cumulative acks sent to devices", registry=r)
        self.flush_seconds = Histogram("truckx_location_flush_seconds", "Time to write one location batch",
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                       registry=r)
        self.store_errors = Counter("truckx_store_errors", "Failed store calls", ["store"], registry=r)
        self.uploads = Counter("truckx_uploads", "Video uploads finished", ["result"], registry=r)
        self.upload_bytes = Counter("truckx_upload_bytes", "Video bytes received", registry=r)
        self.errors = Counter("truckx_errors", "Error responses and frames sent", ["code"], registry=r)
        self.http_requests = Counter("truckx_http_requests", "HTTP requests served", ["method", "status"], registry=r)
        self.alarms = Counter("truckx_alarms", "Alarms stored", ["type"], registry=r)
        self.commands = Counter("truckx_commands", "Command status changes", ["status"], registry=r)
        self.queue_points = Gauge("truckx_location_queue_points", "Location points waiting to be written", registry=r)

    def bind_queue(self, fn: Callable[[], float]) -> None:
        self.queue_points.set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)
