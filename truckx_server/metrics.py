"""Prometheus metrics, one registry per running server (so several servers can share a process)."""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ws_connections = Gauge("truckx_ws_connections", "Open device WebSocket sessions", registry=r)
        # Device WebSocket messages by type: plain ints bumped on the hot path (no lock per frame; the
        # event loop is the only writer), exposed through a collector when scraped.
        self._kind_counts = dict.fromkeys(self.MESSAGE_KINDS, 0)
        r.register(_KindCollector(self._kind_counts))
        self.points_stored = Counter("truckx_location_points_stored", "Location points written (before dedupe)", registry=r)
        self.acks = Counter("truckx_acks_sent", "Cumulative acks sent to devices", registry=r)
        self.flush_seconds = Histogram("truckx_location_flush_seconds", "Time to write one location batch",
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                                       registry=r)
        self.store_errors = Counter("truckx_store_errors", "Failed store calls", ["store"], registry=r)
        self.uploads = Counter("truckx_uploads", "Video uploads finished", ["result"], registry=r)
        self.upload_bytes = Counter("truckx_upload_bytes", "Video bytes received", registry=r)
        self.errors = Counter("truckx_errors", "Error responses and frames sent", ["code"], registry=r)
        # labels from closed sets only (logs.log_function): method or "other", route pattern, HTTP status
        self.http_requests = Counter("truckx_http_requests", "HTTP requests served", ["method", "route", "status"],
                                     registry=r)
        self.alarms = Counter("truckx_alarms", "Alarms stored", ["type"], registry=r)
        self.commands = Counter("truckx_commands", "Command status changes", ["status"], registry=r)
        self.queue_points = Gauge("truckx_location_queue_points", "Location points waiting to be written", registry=r)
        self.video_probes = Counter("truckx_video_probes", "Videos read for metadata and a thumbnail, by outcome "
                                    "(video, not_video, timeout, failed)", ["outcome"], registry=r)
        #: kind: locations, alarms or videos (a closed set)
        #: result: delivered, retry or failed (a closed set)
        self.webhook_attempts = Counter("truckx_webhook_attempts", "Webhook delivery attempts, by result "
                                        "(delivered, retry, failed)", ["result"], registry=r)
        #: transition: enter or exit (a closed set)
        self.geofence_transitions = Counter("truckx_geofence_transitions", "Geofence transitions stored",
                                            ["transition"], registry=r)
        self.geofence_queue_points = Gauge("truckx_geofence_queue_points", "Stored points waiting for geofence "
                                           "evaluation", registry=r)
        self.geofence_pending_devices = Gauge("truckx_geofence_pending_devices", "Devices waiting to be read back "
                                              "from the location store for geofence evaluation", registry=r)
        self.geofence_points_deferred = Counter(
            "truckx_geofence_points_deferred", "Stored points not queued for geofence evaluation (queue full); "
            "their devices are read back from the location store", registry=r)
        self.retention_removed = Counter("truckx_retention_removed", "Items deleted by retention passes", ["kind"],
                                         registry=r)


    MESSAGE_KINDS = ("location", "locations", "command_result", "ping", "binary", "invalid", "unknown")

    def ws_message_kind(self, kind: object) -> None:
        counts = self._kind_counts
        if type(kind) is str and kind in counts:
            counts[kind] += 1
        else:
            counts["unknown"] += 1

    def ws_message_count(self, kind: str) -> int:
        return self._kind_counts[kind]

    def bind_queue(self, fn: Callable[[], float]) -> None:
        self.queue_points.set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _KindCollector:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("truckx_ws_messages", "Device WebSocket messages received", labels=["type"])
        for kind, value in self.counts.items():
            family.add_metric([kind], value)
        yield family
