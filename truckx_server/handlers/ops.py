"""Operations endpoints, no auth: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from ..metrics import CONTENT_TYPE_LATEST
from .base import BaseHandler


class HealthHandler(BaseHandler):
    roles = {"GET": None}

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    roles = {"GET": None}

    async def get(self) -> None:
        stores = await self.node.readiness()
        ready = all(v == "ok" for v in stores.values())
        self.write_json({"status": "ok" if ready else "unavailable", "stores": stores}, 200 if ready else 503)


class MetricsHandler(BaseHandler):
    roles = {"GET": None}

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.node.metrics.render())


def routes() -> list:
    return [
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler),
        (r"/metrics", MetricsHandler),
    ]
